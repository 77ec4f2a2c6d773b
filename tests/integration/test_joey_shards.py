"""Issue #12: Joey sharded by symbol (ARK_JOEY_SHARDS=2), real processes on a real Redis.

Two Joey processes (`joey`, `joey-1`) each read their own inbox; Kyle routes every bar by
crc32(symbol). Checked: every bar reaches exactly one shard, the right one, once, in order per
symbol; the whole pipeline decides exactly what the in-process oracle decides; a shard killed
with SIGKILL mid-batch resumes with identical output; a shrunk shard count holds Kyle rather
than strand bars.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import defaultdict

import pytest
import redis.asyncio as aioredis
from conftest import Lab, wait_for
from helpers import envelopes, log_lines, pending
from test_pipeline import SYMBOLS, expected_outcomes, outcomes

from ark_runtime.api.pipeline import pipeline_status
from ark_runtime.bus.shards import shard_of
from ark_runtime.bus.streams import done_key, inbox
from ark_runtime.market import Bar, SyntheticAdapter
from ark_runtime.metrics.bus import BusSource
from ark_runtime.patterns import PatternDetector

SHARDS = {"ARK_JOEY_SHARDS": "2"}


def oracle_patterns(seed: int, bars: int) -> dict[str, list[tuple]]:
    """What one unsharded Joey emits, per symbol, in order."""
    detector, out = PatternDetector(), defaultdict(list)
    for bar in SyntheticAdapter(SYMBOLS, seed=seed, bars=bars):
        for p in detector.update(bar):
            out[p.symbol].append((p.kind, p.ts.isoformat(), p.indicators))
    return dict(out)


def emitted_patterns(r) -> dict[str, list[tuple]]:
    out = defaultdict(list)
    for e in envelopes(r, inbox("kenny")):
        p = e.payload
        out[p["symbol"]].append((p["kind"], p["ts"].replace("Z", "+00:00"), p["indicators"]))
    return dict(out)


def consumer_pending(r, stream: str, consumer: str) -> int:
    for c in r.xinfo_consumers(stream, "joey"):
        if c["name"] == consumer:
            return int(c["pending"])
    return 0


def test_symbols_of_this_module_use_both_shards() -> None:
    assert {shard_of(s, 2) for s in SYMBOLS} == {0, 1}


@pytest.mark.requirement("TEST_01")
@pytest.mark.requirement("AGENT_01")
def test_two_shards_deliver_every_bar_once_in_order_per_symbol(lab: Lab, r) -> None:
    seed, bars = 11, 300
    expected = expected_outcomes(seed=seed, bars=bars)
    shards = [lab.start(name, **SHARDS) for name in ("joey", "joey-1")]
    lab.start("hrm")
    lab.start("kenny")
    lab.start("kyle", ARK_FEED="synthetic", ARK_FEED_SYMBOLS=",".join(SYMBOLS),
              ARK_FEED_SEED=str(seed), ARK_FEED_BARS=str(bars), **SHARDS)
    wait_for(lambda: all(pending(r, n) == 0 for n in ("joey", "joey-1", "kenny", "hrm"))
             and r.get(next(r.scan_iter("ark:kyle:cursor:*"), "none")) == str(3 * bars),
             60, what="the pipeline to drain")
    # Every bar in exactly one shard stream, the one its symbol hashes to, in feed order.
    feed = [(b.symbol, b.ts.isoformat()) for b in SyntheticAdapter(SYMBOLS, seed=seed,
                                                                     bars=bars)]
    seen: dict[str, list[str]] = defaultdict(list)
    for k, name in enumerate(("joey", "joey-1")):
        for env in envelopes(r, inbox(name)):
            bar = Bar.model_validate(env.payload)
            assert shard_of(bar.symbol, 2) == k, f"{bar.symbol} in {name}"
            seen[bar.symbol].append(bar.ts.isoformat())
            assert r.exists(done_key(name, env.message_id)), "bar not processed by its shard"
    for symbol in SYMBOLS:
        assert seen[symbol] == [ts for s, ts in feed if s == symbol]
    # Both processes worked, each in its own log file and consumer group.
    for agent in shards:
        hops = [h for h in log_lines(agent.env["ARK_LOG_DIR"], agent.name)
                if h.get("event") == "received"]
        assert hops, f"{agent.name} handled nothing"
    # Kenny's one inbox gets each symbol's patterns exactly as one Joey would emit them.
    assert emitted_patterns(r) == oracle_patterns(seed, bars)
    wait_for(lambda: len(outcomes(r)) >= len(expected), 30, what="all decisions")
    assert outcomes(r) == expected  # raises on a plan decided twice
    # Visible to operators: the console's pipeline rows and the exporter's per-instance series.
    status = asyncio.run(console_status(lab))
    assert [a["agent"] for a in status["agents"]] == ["kyle", "joey", "joey-1", "kenny", "hrm",
                                                       "executor"]
    assert all(a["consumers"] == 1 and a["pending"] == 0 for a in status["agents"][1:3])
    processed = {s.labels["agent"]: s.value for m in BusSource(r).metrics()
                 if m.name == "ark_agent_processed" for s in m.samples}
    assert processed["joey"] + processed["joey-1"] == 3 * bars


async def console_status(lab: Lab) -> dict:
    client = aioredis.Redis(port=lab.redis.port, password=lab.redis.password,
                            decode_responses=True)
    try:
        return await pipeline_status(client)
    finally:
        await client.aclose()


@pytest.mark.requirement("TEST_01")
@pytest.mark.requirement("INFRA_04")
def test_sigkilled_shard_resumes_with_identical_output(lab: Lab, r) -> None:
    seed, bars = 9, 1000
    lab.start("kyle", ARK_FEED="synthetic", ARK_FEED_SYMBOLS=",".join(SYMBOLS),
              ARK_FEED_SEED=str(seed), ARK_FEED_BARS=str(bars), **SHARDS)
    # The whole feed waits in the shards' inboxes first: shard 1 then works through a
    # backlog, holding unacked bars nearly all the time, so it is caught mid-batch.
    wait_for(lambda: r.get(next(r.scan_iter("ark:kyle:cursor:*"), "none")) == str(3 * bars),
             30, what="kyle to emit the feed")
    lab.start("joey", **SHARDS)
    victim = lab.start("joey-1", ARK_BUS_BATCH="16", **SHARDS)
    stream, consumer = inbox("joey-1"), f"joey-1@{os.uname().nodename}"
    deadline = time.monotonic() + 30
    while True:  # kill shard 1 while it holds unacked bars, part way through its backlog
        assert time.monotonic() < deadline, "never caught shard 1 holding unacked bars"
        if consumer_pending(r, stream, consumer) > 0 and r.xlen(inbox("kenny")) > 10:
            os.kill(victim.proc.pid, signal.SIGSTOP)
            if consumer_pending(r, stream, consumer) > 0:
                break
            os.kill(victim.proc.pid, signal.SIGCONT)
        assert victim.proc.poll() is None, victim.stderr()[-2000:]
    victim.proc.kill()
    assert victim.proc.wait(5) == -signal.SIGKILL
    lab.start("joey-1", **SHARDS)  # same consumer name: re-reads its own pending first
    wait_for(lambda: pending(r, "joey") == 0 and pending(r, "joey-1") == 0
             and r.get(next(r.scan_iter("ark:kyle:cursor:*"))) == str(3 * bars),
             30, what="both shards to drain the feed")
    # Nothing lost, nothing doubled, same floats bit for bit, per-symbol order kept.
    assert emitted_patterns(r) == oracle_patterns(seed, bars)


def test_a_shard_past_the_count_is_refused(lab: Lab, r) -> None:
    extra = lab.start("joey-2", wait=False, **SHARDS)
    assert extra.proc.wait(20) == 78
    assert "ARK_JOEY_SHARDS is 2" in extra.stderr() and "Traceback" not in extra.stderr()
    assert not r.hgetall("ark:pause")  # a stray shard unit does not halt the pipeline
    beyond = lab.start("joey-64", wait=False, **SHARDS)
    assert beyond.proc.wait(20) == 64 and "Traceback" not in beyond.stderr()


def test_shrinking_with_bars_left_in_a_dropped_shard_holds_kyle(lab: Lab, r) -> None:
    # Bars a former shard 1 never finished; the count is now 1, so nobody reads them.
    bar = next(iter(SyntheticAdapter(["MSFT"], seed=1, bars=1)))
    r.xgroup_create(inbox("joey-1"), "joey", id="0", mkstream=True)
    r.xadd(inbox("joey-1"), {"envelope": json.dumps({"stranded": bar.symbol})})
    kyle = lab.start("kyle", ARK_FEED="synthetic", ARK_FEED_SYMBOLS="MSFT",
                     ARK_FEED_BARS="5")
    wait_for(lambda: any(h.get("event") == "reshard_blocked"
                         for h in log_lines(kyle.env["ARK_LOG_DIR"], "kyle")),
             15, what="kyle to report the stranded shard")
    assert r.xlen(inbox("joey")) == 0  # held: nothing emitted past the stranded bar
    # Once that stream is drained (acked), Kyle goes on by itself.
    entry = r.xreadgroup("joey", "drain", {inbox("joey-1"): ">"})[0][1][0][0]
    r.xack(inbox("joey-1"), "joey", entry)
    wait_for(lambda: r.xlen(inbox("joey")) == 5, 15, what="kyle to resume")
