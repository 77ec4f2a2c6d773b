"""Render docs/AGENT_PROTOCOL.md from the code (envelope model, registry, stream layout).

    python -m ark_runtime.protocol_doc --write docs/AGENT_PROTOCOL.md
    python -m ark_runtime.protocol_doc --check docs/AGENT_PROTOCOL.md   # exit 1 if stale

A unit test runs the check, so the published protocol cannot drift from the code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ark_runtime import pipeline
from ark_runtime.agents import environment
from ark_runtime.bus import advert, streams
from ark_runtime.bus.codec import READ_VERSIONS, VERSION_WHEN_MISSING, WRITE_VERSION
from ark_runtime.bus.envelope import PROTOCOL_VERSION, Envelope
from ark_runtime.bus.errors import PAUSE_KEY
from ark_runtime.bus.protocol_durability import durable_redis
from ark_runtime.bus.protocol_failover import failover
from ark_runtime.bus.protocol_memory import bounded_memory
from ark_runtime.bus.registry import ENDPOINTS, PIPELINE, REGISTRY, SEVERITIES
from ark_runtime.bus.shards import SHARDED_AGENT
from ark_runtime.exitcodes import ArkArgumentParser, ExitCode


def _schema_block(schema: dict) -> list[str]:
    return ["```json", json.dumps(schema, indent=2, sort_keys=True), "```", ""]


def _scaling_out() -> list[str]:
    return [
        "## Scaling out: Joey sharded by symbol",
        "",
        "Joey keeps a rolling window per symbol, so each symbol must be handled by one "
        "process in order. `ARK_JOEY_SHARDS` = N (inventory: `ark_runtime_joey_shards`, "
        "default 1) runs N Joey processes: `ark-agent@joey` (shard 0, inbox "
        "`ark:stream:joey`) and `ark-agent@joey-1` .. `@joey-<N-1>` (inbox "
        "`ark:stream:joey-<k>`, consumer `joey-<k>@<hostname>`, log `joey-<k>.log`, lock "
        "`joey-<k>.lock`). Kyle sends each bar to shard `zlib.crc32(symbol) % N` (stable "
        "across processes and hosts, unlike Python's salted `hash()`), in the same EXEC as "
        "before; all shards emit into Kenny's one inbox. With N = 1 every name is what it "
        "was. A shard's messages keep their own done marks, failures hash and exactly-once "
        "commit; each shard restores only its own symbols' windows at start.",
        "",
        "* Per-symbol order: one symbol, one stream, one consumer process, read in stream "
        "order; kill -9 of a shard re-reads its own pending entries first "
        "(tests/integration/test_joey_shards.py).",
        "* Changing N: lower or raise it with the feed stopped and the shards drained "
        "(`systemctl stop ark-agent@kyle`, wait until every `ark:stream:joey*` group shows "
        "lag 0 and nothing pending, deploy the new count). The role starts the new shard "
        "units and stops, disables and removes those past N. Bars in flight at that moment "
        "are not dropped: bars still waiting in a stream past the new N make Kyle hold the "
        "feed (`reshard_blocked` on the error bus, naming the streams) until they are "
        "finished, e.g. by running the old count again. Undrained bars in a kept stream "
        "are still processed exactly once, but a symbol that moved to another shard may "
        "then see its old and new bars out of order, which is why the procedure drains "
        "first.",
        "* Placement: the agent hosts that share a Redis run each shard once between them, "
        "dealt out with the other agents (docs/TOPOLOGY.md); `ark_runtime_joey_shards_here` "
        "overrides which shards a host runs, e.g. `[0]` on one agent host and `[1]` on "
        "another. Every host gets the same `ark_runtime_joey_shards`, which Kyle routes by.",
        "* Measured (`benchmarks/scale_out.py --runs 5 --symbols 32 --bars 1500`, 1 and 2 "
        "shards alternating, on the 2-core development machine while other jobs ran, load "
        "3-9): a Joey takes about 68 us CPU per bar and Redis about 16 us. In the Joey stage "
        "alone the best back-to-back pairs went from 12,100-12,200 to 19,200-19,400 bars/s "
        "(1.57-1.60x); medians of three sessions ranged 0.70-1.16x, single rounds 0.68-1.60x, "
        "because whatever else runs takes the second core the second shard needs. The bound "
        "here: two Joeys, Redis and the feeder share two cores, about 2 / (68 + 16 + feeder "
        "us) per bar, so about 1.6x at best for the Joey stage and less for the whole "
        "pipeline (Kyle, Kenny, HRM and Redis are not sharded). The issue's >= 1.7x needs "
        "hosts with cores of their own; `benchmarks/scale_out_lab.py` measures one vs two "
        "lab hosts, which on this machine share the same two cores. Its one run so far: one "
        "shard on one lab host 9,864 bars/s (saturated, 20 s window); the two-host half of "
        "that run measured a paused pipeline (the script flushed Redis between deploys, "
        "since changed) and is not a figure.",
        "",
    ]


def _cluster_layout() -> list[str]:
    return [
        "## Redis Cluster layout",
        "",
        "A Lua script may only touch keys of one slot in Redis Cluster. Default (one Redis, "
        "`ARK_BUS_KEY_TAG` unset): the names above, each agent's own keys in its inbox's "
        "slot; a commit also writes the next agent's stream, in another slot, which one "
        "server does not mind. With `ARK_BUS_KEY_TAG=ark` every bus key carries `{ark}` "
        "(`ark:{ark}:stream:<agent>`, `ark:done:{ark}:<agent>:<id>`, "
        "`ark:failures:{ark}:<agent>`, `ark:state:{ark}:joey:...`, "
        "`ark:kyle:{ark}:cursor:<feed>`), so every commit (and Kyle's EXEC) stays in one slot "
        "(tests/unit/test_cluster_keys.py checks each EVAL's KEYS with redis-py's key_slot). "
        "Per-agent tags stay the default: the tag is part of every key name, so switching "
        "renames the streams and marks of a running pipeline (set it on a fresh Redis, all "
        "hosts and the API alike), and one tag puts the whole pipeline on one cluster node, "
        "which buys failover, not write throughput: the pipeline's commits must be atomic "
        "across agents, so they cannot be spread over nodes. The pause hash `ark:pause` keeps its "
        "name: it is only written by single-key commands, which a cluster routes anywhere.",
        "",
    ]


def _versions_section() -> list[str]:
    """The compatibility rule every release follows, with this release's numbers."""
    n = PROTOCOL_VERSION
    return [
        "## Schema versions and upgrades",
        "",
        "Every envelope carries its schema version in `v` (a JSON integer). During a rolling "
        "upgrade (`invoke deploy --serial N`, LAUNCH.md \"Upgrade\") agents of two adjacent "
        "releases share one bus, so the rule is:",
        "",
        "* A release with schema version N reads envelopes of versions N-1 and N. Anything "
        "else is dead-lettered with the reason `unsupported-version: envelope schema version "
        "<v> is newer than this agent reads (...)` (or `older`), naming the version; a `v` that "
        "is not an integer is `schema-invalid: v: ...`.",
        "* A release writes the oldest version the previous release reads. A release that "
        "changes the envelope or a payload in a way the previous release cannot read bumps "
        "N, reads N-1 and N, and still writes N-1; only the next release writes N. So both "
        "releases of any roll read everything the other writes, in either direction.",
        "* Only adjacent releases interoperate: upgrade one release at a time (a fleet two "
        "releases behind is re-deployed, not rolled, or its messages are dead-lettered).",
        f"* An envelope without `v` predates the field and is read as version "
        f"{VERSION_WHEN_MISSING}: accepted while {VERSION_WHEN_MISSING} is N-1 or N, refused "
        "as too old after that.",
        "* Adding a new message type is a version bump too: the previous release dead-letters "
        "an unregistered type. So a new type is written only to a reader that advertises it: "
        "every consuming agent sets `ark:reads:{ark:stream:<instance>}` (a key it owns) at "
        "start (refreshed every "
        f"{advert.REFRESH_S:g} s, TTL {advert.TTL_S} s) to the types its inbox carries and "
        "the versions it reads, and a writer sends a type in `GATED` "
        "(`ark_runtime/bus/advert.py`: "
        f"{', '.join(f'`{t}`' for t in sorted(advert.GATED))}) only while every reader of it "
        "lists it (re-read every few seconds). A reader of the previous release sets no key: "
        "nothing gated reaches it. A gated type must therefore be one whose newest message "
        "supersedes the skipped ones (the executor's marks: HRM's open P&L stays at the fills' "
        "prices until the first mark after HRM's upgrade).",
        "",
        f"This release: N = {n}, reads {READ_VERSIONS[0]} and {READ_VERSIONS[1]}, writes "
        f"{WRITE_VERSION}. Version 2 adds `hold_bars` to `trade.plan` (and to the plan inside "
        "`hrm.decision`), and the executor's message types; this release still writes 1 "
        "because the release before it reads only 1 (its check was `v == 1`, its payload "
        "models forbid unknown fields): a field a later version added is left out of the "
        "older form (`ADDED_IN_VERSION` in `ark_runtime/bus/codec.py`), its reader gets the "
        "field's default, and a value other than the default is refused, naming the field. "
        "The next release writes 2. Tests: `tests/unit/test_envelope_versions.py`, "
        "`tests/integration/test_envelope_versions_bus.py`, and "
        "`tests/integration/test_wire_compat_previous_release.py`, which runs the previous "
        "release's own code (from git) on what this release writes, and the other way round.",
        "",
    ]


def _execution_and_risk() -> list[str]:
    return [
        "## Execution and risk (AGENT_04)",
        "",
        "* HRM sends each approved plan to the executor (`trade.approved`, the verdict with "
        "its size multiplier) in the same commit as the verdict. Kyle adds every bar to the "
        "executor's inbox as well as to Joey's (its own copy, addressed to the executor, same "
        "EXEC; not counted in Kyle's backlog, so a stopped executor never stalls the feed).",
        "* The executor (`ark_runtime/execution/paper.py`, pure) fills an approved plan at the "
        "open of the first bar after the plan's signal bar, moved against the trade by "
        "`ARK_EXEC_SLIPPAGE_BPS`, with a fee of `ARK_EXEC_FEE_BPS` per side; it closes at the "
        "stop, the target (a gap exits at the open; both touched in one bar counts as the "
        "stop), after the plan's `hold_bars` (at that bar's close) or at the session end (the "
        "close of the session's last bar, in the ruleset's `session_timezone`). It keeps "
        "`ARK_EXEC_BAR_HISTORY` bars per symbol, so an approval that arrives after its fill "
        "bar replays them: the same bars give the same result whatever the arrival order. Its "
        "books (`ark:state:{ark:stream:executor}:books`, a hash per symbol) are written in "
        "each message's commit; fills and closes go to HRM's inbox and to "
        "`ark:stream:positions`, with ids derived from the flow, in that same commit.",
        "* HRM books each fill and close in the ledger and, for a close, its P&L (a fraction "
        "of the account, net of fees) in the breaker state, in one SQLite transaction with "
        "the message's idempotency mark. A breaker is tripped while its value is at or past "
        "its threshold (`daily_loss_limit` on this session's realised loss, "
        "`loss_streak_limit` on the losing streak), so it trips on the close that reaches it; "
        "a tripped breaker rejects every plan (`BRK-DAILY-LOSS`, `BRK-LOSS-STREAK`, the "
        "breaker named in the message). The trip is reported once, as `error.raised` "
        "(`breaker_tripped:<name>`) at the ruleset's severity, in the commit that acks the "
        "close; a `critical` one also sets HRM's pause on Kyle, Joey and Kenny in that commit. "
        "Exposure: an approval books its size as open exposure until the close; a plan that "
        "would take a symbol or the total past `exposure_limits` is rejected (`EXP-SYMBOL`, "
        "`EXP-TOTAL`). Sessions and the daily values run on market time (plans' and closes' "
        "bar times), not the wall clock.",
        "* Open P&L, marked to market: while a symbol has open filled positions, each of its "
        "bars also sends HRM a `position.marked` (the bar's close, the executor's slippage "
        "and fee) in that bar's commit (HRM's inbox only). HRM keeps each open fill and each "
        "symbol's newest mark in its store (state `hrm.open_book`), in the transaction with "
        "the message's idempotency mark, so a redelivery counts nothing twice. Open P&L is "
        "what closing every open position at its mark would realise with the executor's own "
        "costs (exit slippage, both fees): a close at the mark moves exactly that amount from "
        "open to realised. The breakers count realised P&L only (the ruleset's thresholds "
        "are on results); open P&L is shown, never tripped on.",
        "* `hrm.breaker_reset` (from `ark hrm breaker reset NAME --reason ...` or the "
        "console's POST `/api/admin/breakers/{name}/reset`, both audited) sets that "
        "breaker's value back to zero; when no critical breaker is left tripped HRM lifts "
        "its pause (`control.resume`).",
        "* HRM publishes its risk state (breakers, realised, daily and open P&L with "
        "`marked_at`, streak, positions, exposure) as JSON "
        "at `ark:risk:{ark:stream:hrm}` in every commit that changes it, and at start: the "
        "console, the exporter (`ark_hrm_*`) and `ark hrm risk` read it there, on any host.",
        "* Paper is the only mode that runs (`ARK_EXEC_MODE=paper`). A broker adapter "
        "implements `ark_runtime.execution.broker.BrokerAdapter` (submit, cancel, fills); "
        "none ships, so `live` exits 78, and setting it takes the inventory's explicit "
        "`ark_runtime_execution_mode: live` and a deploy (audited).",
        "",
    ]


def _adding_an_agent() -> list[str]:
    return [
        "## Adding an agent",
        "",
        "The pipeline is declared once, in `ark_runtime/pipeline.py` (a leaf module both "
        "`ark_runtime` and `ark_ops` read). Every list of agents derives from it: the bus's "
        "endpoints and each message type's producers and consumers (below), the agent-name "
        "validator, the settings' readers and credential domains, the exporter's units, the "
        "console's log sources, the compose services, the placement over hosts, and the "
        "Ansible role (`{{ 'agents' | ark_pipeline }}`, plugins/filter/ark_pipeline.py). "
        "`tests/unit/test_pipeline_declaration.py` fails if another product file spells the "
        "list out. Adding an agent is three steps:",
        "",
        "1. **Its class**: `ark_runtime/agents/<name>.py`, a subclass of "
        "`ark_runtime.agents.base.Agent` (or `ConsumerAgent` when it reads an inbox) with "
        "`name = \"<name>\"`. A new payload is a pydantic model in the module that owns "
        "the concept.",
        "2. **One declaration entry** in `pipeline.AGENTS`, at its place in flow order: "
        "`Agent(\"<name>\", \"ark_runtime.agents.<name>:<Class>\", consumes=<type it "
        "reads>, emits=<type it writes>, domains=(<credential domains>))` (further types "
        "in `also_consumes` / `also_emits`, as the executor and HRM have), plus a "
        "`Message(type, \"module:Model\", description)` entry in `pipeline.MESSAGES` if it "
        "emits a new type. Its unit `ark-agent@<name>`, inbox, consumer group, log file, "
        "logrotate entry, compose service name and placement follow; the env schema and "
        "this document are regenerated (`python -m ark_runtime.settings --write`, "
        "`python -m ark_runtime.bus.protocol_doc --write docs/AGENT_PROTOCOL.md`).",
        "3. **Its tests**: unit tests for its logic, and the integration pipeline test "
        "(tests/integration) extended by one hop. The declaration test then checks that "
        "every derived view names it.",
        "",
        "A compose service for it is the one thing written by hand: `docker-compose.yml` "
        "must define every service in `pipeline.COMPOSE_SERVICES` (`invoke compose.check` "
        "says which is missing).",
        "",
    ]


def render() -> str:
    s = streams.BusSettings()
    lines = [
        "# ARK agent protocol",
        "",
        "<!-- Generated by `python -m ark_runtime.protocol_doc --write "
        "docs/AGENT_PROTOCOL.md`; do not edit by hand (a unit test compares it with the code). "
        "-->",
        "",
        f"Envelope schema version: **{PROTOCOL_VERSION}** (reads "
        f"{READ_VERSIONS[0]} and {READ_VERSIONS[1]}, writes {WRITE_VERSION}). Pipeline: "
        + " → ".join(f"`{a}`" for a in PIPELINE) + ".",
        "",
        "## Streams",
        "",
        "| stream | written by | read by |",
        "|---|---|---|",
    ]
    for agent in PIPELINE[1:]:
        writers = ", ".join(f"{w} (`{t}`)" for t in pipeline.BY_NAME[agent].inputs
                            for w in (pipeline.producers(t) or ("operator",)))
        lines.append(f"| `{streams.inbox(agent)}` | {writers} | group `{agent}`, consumer "
                     f"`{agent}@<hostname>` |")
        if agent == SHARDED_AGENT:
            lines.append(f"| `{streams.inbox(SHARDED_AGENT)}-<k>` | kyle, when "
                         "`ARK_JOEY_SHARDS` > 1 (k = 1 .. N-1) | group `joey`, consumer "
                         "`joey-<k>@<hostname>` |")
    lines += [
        f"| `{streams.DECISIONS_STREAM}` | hrm (`hrm.decision`) | UI, tests, benchmarks |",
        f"| `{streams.POSITIONS_STREAM}` | executor (`position.filled`, `position.closed`) | "
        "UI, operators (HRM reads its own copies from its inbox) |",
        f"| `{streams.ERRORS_STREAM}` | every agent, operator (`error.raised`, `control.*`) "
        "| `ark errors`, UI |",
        f"| `{streams.DEAD_STREAM}` | every consumer, kyle (invalid feed rows) | operators |",
        "",
        "Each entry holds the envelope JSON in field `envelope` (authoritative) plus copies of "
        "`type` and `correlation_id` for humans using `redis-cli`.",
        "",
        "## Delivery rules",
        "",
        "* Consumers read through their group and ack only after processing. The XACK, "
        "emitting downstream, the agent's state writes and a recent-work mark "
        "(`ark:done:{ark:stream:<agent>}:<message_id>`, kept "
        f"{s.dedup_ttl_s} s, `ARK_BUS_DEDUP_TTL_S`) happen in one Lua script (atomic), and the "
        "effects run only if that XACK took the entry off the group's pending list: a "
        "redelivered message has no second effect (see \"Bounded memory\" below). A batch "
        "commits in one such script; within it, a state write that sets one hash field "
        "(HSET key field value) is written once, with the last value an applied message gave "
        "it, at the end of the script or before another command of the batch touches that "
        "key: the same final state as writing each in turn, one HSET per field in the AOF "
        "(issue #23 §3).",
        f"* Batches: a consumer reads up to {s.batch} entries (`ARK_BUS_BATCH`), handles them, "
        "then commits the whole batch in one Lua call: each message's emit + state + mark + "
        "ack is applied in order and all or nothing, a message no longer pending (settled "
        "before) is only acked. Every key the script touches is passed in KEYS (Redis "
        "Cluster declares keys that way), and only single-key commands are allowed in it. "
        "An agent's own keys "
        "(done marks, `ark:failures:{ark:stream:<agent>}`) carry its inbox's name as hash "
        "tag, so they share the inbox's slot; the downstream streams are in other slots, "
        "which one Redis does not mind (see \"Redis Cluster layout\" for the one-slot "
        "layout). A handler failure cuts the batch: what was handled before it is committed "
        "first, the failing message stays pending.",
        "* HRM writes its decisions in one SQLite transaction per batch, each plan in its own "
        "SAVEPOINT (a failing plan rolls back alone), committed before the batch's Redis "
        "commit. Fsync policy (`ARK_HRM_SYNCHRONOUS`): `FULL` by default, i.e. one fsync of "
        "the WAL per batch before its ack. `NORMAL` (WAL) fsyncs only at checkpoints: a "
        "process crash (kill -9) still loses nothing, but a power loss or OS crash may drop "
        "the last decisions whose plans were already acked in Redis (lost, not redone; their "
        "verdicts may already be on `ark:stream:decisions`). Choose it only where that is "
        "acceptable: on a busy shared disk an fsync's p99 is 20-70 ms, which is then HRM's "
        "share of the emit->decision p99. WAL checkpoints run in a background thread of HRM "
        "(PASSIVE, every second, from its own connection; `ark_runtime/hrm/wal.py`) instead "
        "of inside the commit that crosses SQLite's 1,000-page threshold, which stalled "
        "decisions 100-200 ms every few seconds; HRM's connection keeps an automatic "
        "checkpoint at 10,000 pages only as a backstop. Durability is unchanged (a checkpoint "
        "only copies committed, already fsync'd WAL pages). The breaker state is read once "
        "per batch (the batch's BEGIN IMMEDIATE holds the write lock, and deciding never "
        "writes it).",
        "* Decoding: entries in the canonical form `to_fields` writes are checked with msgspec "
        "(types, ranges, unknown fields, ids, endpoints, type, expiry) and their payload with "
        "its model; anything else gets the full pydantic validation, which accepts it or "
        "words the error naming the field. Same verdicts and messages either way.",
        "* Joey's state: each bar is appended to "
        "`ark:state:{ark:stream:joey}:joey:window:<symbol>` (trimmed to `ARK_JOEY_WINDOW`) "
        "with the symbol's indicator accumulators (`...:joey:acc`) and MA-cross side "
        "(`...:joey:side`), in the bar's own part of the batch's commit (not once per batch: "
        "a script that fails half-way keeps the acks before the failure); a restart restores "
        "all three and continues bit for bit (the untagged names of earlier releases are "
        "still read). Indicators are O(1) per bar, within 1e-9 (relative) of the reference "
        "computation. The state keys name the symbol, not the shard: every shard reads and "
        "writes the same keys (its own symbols only), so a changed shard count finds each "
        "symbol's state wherever the symbol lands.",
        "* Logging: one INFO line per committed batch (`event: batch`) lists each message's "
        "hop (`received`, `emitted`/`decided` with the ids); `ark trace` expands it. The "
        "per-message lines are DEBUG (`ARK_LOG_LEVEL=DEBUG`).",
        f"* A consumer's pending entries idle for more than {s.claim_min_idle_ms} ms "
        "(`ARK_BUS_CLAIM_MIN_IDLE_MS`) are reclaimed by a live consumer with XAUTOCLAIM.",
        f"* A message delivered more than {s.max_deliveries} times (`ARK_BUS_MAX_DELIVERIES`), "
        "a message that is not a valid envelope (unknown type, payload failing its schema), a "
        "misrouted one and an expired one (`timestamp + ttl` in the past) go to "
        f"`{streams.DEAD_STREAM}` with the reason, in one script with its XACK and only if "
        "that XACK took it off the pending list (a committed message is never also a dead "
        "letter). The console's replay moves a dead letter back to its inbox only if its "
        "own XDEL removed it (one script), so two replays cannot queue it twice.",
        "* Transient Redis errors are retried with exponential backoff (0.1 s doubling, capped "
        "at 5 s); a handler failure leaves the message pending for redelivery.",
        "* Inboxes are trimmed with `XTRIM MINID` up to the oldest entry any group still needs; "
        f"every XADD also carries `MAXLEN ~ {s.maxlen}` (side streams `~ {s.side_maxlen}`) as "
        "a last-resort bound.",
        "",
        *bounded_memory(s),
        *durable_redis(),
        *failover(),
        *_scaling_out(),
        *_cluster_layout(),
        "## Dead-letter entries",
        "",
        f"`{streams.DEAD_STREAM}` entries are flat fields: `reason`, `agent`, `source_stream`, "
        "`source_id`, `deliveries`, `correlation_id` (when readable), `ts`, and `original` "
        "(the JSON of the untouched original fields).",
        "",
        *_versions_section(),
        "## Error bus and pauses",
        "",
        f"Severities: {', '.join(f'`{x}`' for x in SEVERITIES)}. A `critical` error from agent "
        f"X sets `{PAUSE_KEY}`[X] and pauses every agent upstream of X (for Kyle or the "
        "operator: Kyle itself). Paused agents stop emitting; their input waits in the streams. "
        "`ark errors status` shows pauses, `ark errors clear` lifts them (published as "
        "`control.resume`).",
        "",
        *_execution_and_risk(),
        *_adding_an_agent(),
        "## Agent processes",
        "",
        "`ark agent NAME` runs one agent (`ark-agent@NAME.service`, Type=notify): READY=1 once "
        "Redis answers and the agent is set up, WATCHDOG=1 from the main loop, STOPPING=1 on "
        "SIGTERM, after which it finishes and acks what it holds, persists, flushes and exits "
        "0. A second instance on the same host exits at once (flock on "
        "`$ARK_RUN_DIR/NAME.lock`).",
        "",
        "## Exit codes",
        "",
        "One table for every ARK command, agent and unit (`ark_runtime/exitcodes.py`, "
        "sysexits-style). Agents exit 0 on a clean stop, 64 for an unknown agent name, 69 when "
        "Redis is unreachable at start, 75 when another instance holds the lock and 78 on bad "
        "configuration (env values, feed, ruleset); the units do not restart on 64, 75 and 78 "
        "(`RestartPreventExitStatus=`), which would only fail again. A checker exits 65 for "
        "the bad file it was given (`python -m ark_runtime.hrm check`, `ark env check`); a "
        "service started with that file exits 78.",
        "",
        "| exit code | name | meaning |",
        "|---|---|---|",
        *[f"| {code.value} | `{code.name}` | {code.meaning} |" for code in sorted(ExitCode)],
        "",
        "## Environment",
        "",
        "Declared once, with types and defaults, in `ark_runtime/settings/model.py` (the env "
        "schema `ark_runtime/env.schema.yaml` is generated from it); a bad value stops the "
        "agent with exit 78 and a message naming the variable.",
        "",
        "| variable | agents | default | meaning |",
        "|---|---|---|---|",
        *[f"| `{k}` | {a} | {d} | {m} |" for k, a, d, m in environment()],
        "",
        "## Envelope",
        "",
        f"Endpoints (`from_agent`, `to_agent`): {', '.join(f'`{e}`' for e in ENDPOINTS)}.",
        "",
        *_schema_block(Envelope.model_json_schema()),
        "## Message types",
        "",
        "| type | producers | consumers | description |",
        "|---|---|---|---|",
    ]
    for name in sorted(REGISTRY):
        t = REGISTRY[name]
        lines.append(f"| `{name}` | {', '.join(t.producers)} | {', '.join(t.consumers)} | "
                     f"{t.description} |")
    lines.append("")
    for name in sorted(REGISTRY):
        t = REGISTRY[name]
        lines += [f"### `{name}`", "", t.description, "",
                  *_schema_block(t.model.model_json_schema())]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = ArkArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, metavar="PATH")
    group.add_argument("--check", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text, encoding="utf-8")
        return 0
    current = args.check.read_text(encoding="utf-8") if args.check.exists() else ""
    if current != text:
        print(f"{args.check} is stale: regenerate with "
              f"python -m ark_runtime.protocol_doc --write {args.check}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
