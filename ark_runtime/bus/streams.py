"""Redis Streams transport (AGENT_01/02): inboxes read through consumer groups.

* Each agent reads `ark:stream:<agent>` in group `<agent>` as consumer `<agent>@<host>`.
* Effects on the bus are committed atomically with the ack: one Lua script (atomic in Redis,
  one round trip) XACKs the entry and, only if the XACK removed it from the group's pending
  list (it returns 1), runs the downstream XADDs and the agent's state writes and sets a
  short-lived mark `ark:done:<agent>:<message_id>`. The pending entry itself is the
  idempotency mark: a crash before the script leaves it pending (redelivered, nothing was
  emitted); a crash after it leaves nothing to redo; a second commit of the same entry (a
  reclaimed copy, a lost reply) finds it acked and has no effect, however late it comes. So
  the marks need not outlive the redelivery window (issue #19, docs/AGENT_PROTOCOL.md).
* A dead consumer's pending entries are taken over with XAUTOCLAIM after `claim_min_idle_ms`.
* A message delivered more than `max_deliveries` times, or that is not a valid envelope, or
  has expired, goes to `ark:stream:dead` with the reason, in one script with its XACK and
  only if that XACK removed it from the pending list: a message that was committed is never
  also a dead letter, so replaying a dead letter cannot do its work twice.
* Memory stays bounded: inboxes are trimmed with XTRIM MINID up to the oldest entry any group
  still needs (never an unacked one); XADD also caps every stream with MAXLEN ~ as a last
  resort, and the side streams (dead, errors, decisions) with a smaller cap.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ark_runtime.bus.clients import redis_client
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.keys import (  # noqa: F401 - re-exported: the bus's names live here too
    DEAD_STREAM,
    DECISIONS_STREAM,
    ERRORS_STREAM,
    KEY_TAG,
    POSITIONS_STREAM,
    PREFIX,
    SIDE_STREAMS,
    done_key,
    failures_key,
    inbox,
    kyle_cursor_key,
    slot_tag,
)
from ark_runtime.config import RedisSettings, redis_settings
from ark_runtime.settings import ArkSettings, default_of, load

T = TypeVar("T")


# The commands an agent may put in a commit. Each takes exactly one key (the one passed in
# KEYS): a multi-key command's other keys would reach the script as plain arguments, which
# Redis Cluster cannot route.
SINGLE_KEY_COMMANDS = frozenset({"XADD", "RPUSH", "LPUSH", "LTRIM", "HSET", "HDEL", "SET",
                                 "DEL", "INCR", "INCRBY", "EXPIRE", "HINCRBY", "SADD", "SREM"})


def default_consumer(agent: str, configured: str | None = None) -> str:
    # Stable across restarts on one host, distinct across hosts: a restarted agent finds its
    # own pending entries again, and another host's agent can reclaim them if it never returns.
    return configured or f"{agent}@{socket.gethostname()}"


@dataclass(frozen=True)
class BusSettings:
    """The bus knobs (ARK_BUS_*); types, bounds and defaults are declared in the settings."""

    max_deliveries: int = default_of("ARK_BUS_MAX_DELIVERIES")
    claim_min_idle_ms: int = default_of("ARK_BUS_CLAIM_MIN_IDLE_MS")
    claim_every_s: float = default_of("ARK_BUS_CLAIM_EVERY_S")
    block_ms: int = default_of("ARK_BUS_BLOCK_MS")
    batch: int = default_of("ARK_BUS_BATCH")
    maxlen: int = default_of("ARK_BUS_MAXLEN")
    side_maxlen: int = default_of("ARK_BUS_SIDE_MAXLEN")
    dedup_ttl_s: int = default_of("ARK_BUS_DEDUP_TTL_S")
    wait_replicas: int = default_of("ARK_BUS_WAIT_REPLICAS")
    wait_timeout_ms: int = default_of("ARK_BUS_WAIT_TIMEOUT_MS")

    @classmethod
    def from_settings(cls, cfg: ArkSettings) -> BusSettings:
        return cls(max_deliveries=cfg.bus_max_deliveries,
                   claim_min_idle_ms=cfg.bus_claim_min_idle_ms,
                   claim_every_s=cfg.bus_claim_every_s, block_ms=cfg.bus_block_ms,
                   batch=cfg.bus_batch, maxlen=cfg.bus_maxlen, side_maxlen=cfg.bus_side_maxlen,
                   dedup_ttl_s=cfg.bus_dedup_ttl_s, wait_replicas=cfg.bus_wait_replicas,
                   wait_timeout_ms=cfg.bus_wait_timeout_ms)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BusSettings:
        """Raises SettingsError (a ValueError) naming each bad variable."""
        return cls.from_settings(load(env))


def connect(settings: RedisSettings | None = None, *, block_ms: int = 500) -> redis.Redis:
    s = settings or redis_settings()
    return redis_client(
        s, decode_responses=True,
        # A blocking XREADGROUP must not be mistaken for a dead socket.
        socket_timeout=block_ms / 1000 + 10, socket_connect_timeout=5,
        health_check_interval=30,
        # No silent retries inside redis-py: a command whose reply was lost may have run
        # (an XREADGROUP that delivered entries, an EXEC). Errors reach the agent loop, which
        # backs off and then reconciles (re-reads its own pending entries, checks its cursor).
        retry=Retry(NoBackoff(), 0),
    )


def replicated(client: redis.Redis, settings: BusSettings) -> int | None:
    """Issue #20: after a commit, WAIT until `wait_replicas` replicas have it, at most
    `wait_timeout_ms`. The commit stands either way (Redis has applied it); the agent goes
    on once a replica has it, so while one is attached a failover cannot take back a commit
    the agent acted on afterwards (HRM's verdict, the executor's orders). Past the timeout
    it goes on regardless, and says so (Agent._replication). Returns how many replicas
    acknowledged, or None when waiting is off."""
    if settings.wait_replicas <= 0:
        return None
    return int(client.wait(settings.wait_replicas, settings.wait_timeout_ms))


def with_backoff(fn: Callable[[], T], *, attempts: int = 6, base: float = 0.1,
                 cap: float = 5.0, on_retry: Callable[[int, Exception], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> T:
    """Retry `fn` on Redis connection errors with exponential backoff (0.1, 0.2, 0.4 ... s).

    An authentication failure is raised at once: a wrong password does not heal by waiting
    (redis-py makes AuthenticationError a ConnectionError, hence the explicit check)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except redis.AuthenticationError:
            raise
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if attempt == attempts or should_stop():
                raise
            if on_retry:
                on_retry(attempt, exc)
            time.sleep(min(cap, base * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


def publish(pipe: Any, stream: str, envelope: Envelope, maxlen: int) -> None:
    """XADD with an approximate cap (works on a client or a pipeline)."""
    pipe.xadd(stream, envelope.to_fields(), maxlen=maxlen, approximate=True)


# One call commits a whole batch. KEYS: inbox stream, failures hash, then every other key
# the batch touches (done marks, downstream streams, the agent's state keys), so the script
# declares all its keys as Redis Cluster requires (tests/unit/test_cluster_keys.py). The
# agent's own keys share its inbox's slot (slot_tag); the downstream streams do not yet.
# ARGV: group, mark ttl, JSON list of messages, each [index of its done mark in KEYS, entry
# id, commands], a command being [name, index of its key in KEYS, args...]. Messages are
# applied in order. The XACK decides: 1 means the entry was still pending for the group
# (nobody committed or dead-lettered it), so its effects run; 0 means it was settled before
# (by us through a lost reply, or by another consumer), so it is only acked. The mark is no
# longer the guard (it expires after the redelivery window); it stays as the fast path of a
# redelivery and a record of recent work. The whole script is atomic, so each message's
# emit+state+mark+ack is all or nothing.
# The `#!lua` line (Redis >= 7) makes Redis refuse the whole script up front when it is over
# maxmemory, instead of failing at the first write inside it: the XACK (not a "denyoom"
# command) would otherwise succeed and the XADD after it fail, acking a message whose
# effects were never written.
# Group write (issue #23 §3): an HSET of one field is held back until the end of the script
# (or until another command of the batch touches its key), and only the last value each field
# got is written: the batch's messages often rewrite the same field (a symbol's state, once
# per bar), and the final state is the same as writing each one in turn. Only values of
# messages whose XACK returned 1 are held, as before only their commands ran; the script is
# still atomic, so nobody sees the difference, and Redis's AOF gets one HSET per field.
_COMMIT_LUA = """#!lua
local out = {}
local held, order = {}, {}
local function flush(k)
  local fields = held[k]
  if fields == nil then return end
  held[k] = nil
  for f, v in pairs(fields) do
    redis.call('HSET', KEYS[k], f, v)
  end
end
for i, m in ipairs(cjson.decode(ARGV[3])) do
  if redis.call('XACK', KEYS[1], ARGV[1], m[2]) == 1 then
    for _, cmd in ipairs(m[3]) do
      local k = cmd[2]
      if #cmd == 4 and string.upper(cmd[1]) == 'HSET' then
        if held[k] == nil then
          held[k] = {}
          order[#order + 1] = k
        end
        held[k][cmd[3]] = cmd[4]
      else
        flush(k)
        redis.call(cmd[1], KEYS[k], unpack(cmd, 3))
      end
    end
    redis.call('SET', KEYS[m[1]], m[2], 'EX', ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
  redis.call('HDEL', KEYS[2], m[2])
end
for _, k in ipairs(order) do
  flush(k)
end
return out
"""

# Dead-lettering, settled like a commit: KEYS inbox, failures hash, dead stream; ARGV group,
# entry id, force ("1" for an entry Redis already dropped from the pending list, e.g. trimmed
# past the MAXLEN cap), then the dead entry's fields. The dead entry is written only when the
# XACK took the entry off the pending list, so a committed message never becomes a dead
# letter too. Returns the dead entry's id, or false when it had been settled already. Refused
# as a whole when Redis is over maxmemory (`#!lua`, as the commit).
_DEAD_LUA = """#!lua
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
if acked == 0 and ARGV[3] ~= '1' then
  return false
end
return redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
"""

Commit = tuple["Delivery", Iterable[tuple[str, Envelope]], Iterable[Sequence[str]]]


@dataclass
class Delivery:
    stream: str
    entry_id: str
    fields: dict[str, str]
    deliveries: int = 1
    envelope: Envelope | None = field(default=None)


class Inbox:
    """One agent's view of its inbox stream through its consumer group."""

    def __init__(self, client: redis.Redis, agent: str, consumer: str,
                 settings: BusSettings, instance: str | None = None) -> None:
        self.r = client
        self.agent = agent
        # A shard (`joey-1`) reads its own stream and keeps its marks under its own tag.
        self.owner = instance or agent
        self.stream = inbox(self.owner)
        self.group = agent
        self.consumer = consumer
        self.settings = settings
        self._commit_script = client.register_script(_COMMIT_LUA)
        self._dead_script = client.register_script(_DEAD_LUA)

    def ensure_group(self) -> None:
        try:
            # id 0: messages published before the group existed are still delivered.
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_own_pending(self, after: str = "0") -> list[Delivery]:
        """Entries this consumer name was delivered but never acked (we restarted), after
        entry id `after`. Re-reading them counts as a delivery."""
        reply = self.r.xreadgroup(self.group, self.consumer, {self.stream: after},
                                  count=self.settings.batch)
        return self._with_counts(self._entries(reply))

    def peek_own_pending(self, after: str = "0") -> list[Delivery]:
        """Like read_own_pending, but not counted as a delivery: used after a Redis error
        interrupted a batch in a process that kept running. The entries were not at fault;
        counting each re-read would dead-letter the tail of a batch after a few dropped
        connections without it ever being attempted (issue #7)."""
        start = "-" if after == "0" else f"({after}"
        info = self.r.xpending_range(self.stream, self.group, min=start, max="+",
                                     count=self.settings.batch, consumername=self.consumer)
        if not info:
            return []
        pipe = self.r.pipeline(transaction=False)
        for item in info:
            pipe.xrange(self.stream, min=item["message_id"], max=item["message_id"])
        result = []
        for item, found in zip(info, pipe.execute(), strict=True):
            fields = found[0][1] if found else {}
            result.append(Delivery(self.stream, item["message_id"], fields,
                                   int(item["times_delivered"])))
        return result

    def read(self, block_ms: int | None = None) -> list[Delivery]:
        reply = self.r.xreadgroup(
            self.group, self.consumer, {self.stream: ">"},
            count=self.settings.batch,
            block=self.settings.block_ms if block_ms is None else block_ms,
        )
        return [Delivery(self.stream, eid, f, 1) for eid, f in self._entries(reply)]

    def reclaim(self) -> list[Delivery]:
        """XAUTOCLAIM entries idle longer than claim_min_idle_ms from any consumer."""
        _next, claimed, deleted = self.r.xautoclaim(
            self.stream, self.group, self.consumer,
            min_idle_time=self.settings.claim_min_idle_ms,
            start_id="0-0", count=self.settings.batch,
        )[:3]
        for entry_id in deleted:
            # Trimmed while pending: only possible past the MAXLEN safety cap. The content is
            # gone; record the loss where operators look, rather than acking silently.
            self.dead_letter(Delivery(self.stream, entry_id, {}, 0),
                             "entry trimmed before it was processed (stream hit its MAXLEN "
                             "cap: raise ARK_BUS_MAXLEN or fix the stalled consumer)",
                             force=True)
        entries = [(eid, f) for eid, f in claimed if f is not None]
        return self._with_counts(entries)

    def _entries(self, reply: Any) -> list[tuple[str, dict[str, str]]]:
        out: list[tuple[str, dict[str, str]]] = []
        for _stream, entries in reply or []:
            out.extend((eid, f) for eid, f in entries if f is not None)
        return out

    def _with_counts(self, entries: list[tuple[str, dict[str, str]]]) -> list[Delivery]:
        if not entries:
            return []
        pipe = self.r.pipeline(transaction=False)
        for eid, _ in entries:
            pipe.xpending_range(self.stream, self.group, min=eid, max=eid, count=1)
        counts = pipe.execute()
        result = []
        for (eid, fields), info in zip(entries, counts, strict=True):
            n = int(info[0]["times_delivered"]) if info else 1
            result.append(Delivery(self.stream, eid, fields, n))
        return result

    # -- outcomes ----------------------------------------------------------------------

    def already_done(self, message_id: str) -> bool:
        return bool(self.r.exists(done_key(self.owner, message_id)))

    def commit(self, delivery: Delivery, outputs: Iterable[tuple[str, Envelope]],
               state: Iterable[Sequence[str]] = ()) -> bool:
        """Emit `outputs`, run the `state` commands (the agent's own state writes: each is
        [command, key, args...]), mark the message done and ack it, atomically.

        Returns False (and only acks) when another consumer committed it first."""
        return self.commit_many([(delivery, outputs, state)])[0]

    def commit_many(self, commits: Sequence[Commit]) -> list[bool]:
        """`commit` for a whole batch in one script call (one round trip, one reply): each
        message's commit is applied in order and all or nothing. Re-running it is harmless
        (the done marks make a second run only ack), which the NOSCRIPT retry relies on."""
        if not commits:
            return []
        keys = [self.stream, failures_key(self.owner)]
        index: dict[str, int] = {}

        def key_no(key: str) -> int:
            if key not in index:
                keys.append(key)
                index[key] = len(keys)
            return index[key]

        messages = [[key_no(done_key(self.owner, d.envelope.message_id)), d.entry_id,
                     self._commands(outputs, state, key_no)]
                    for d, outputs, state in commits if d.envelope is not None]
        if len(messages) != len(commits):
            raise ValueError("commit needs decoded deliveries")
        args = [self.group, self.settings.dedup_ttl_s, json.dumps(messages)]
        try:
            reply = self.r.evalsha(self._commit_script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            # Redis restarted (scripts are not kept): load it; nothing ran, run it again.
            self._commit_script.sha = self.r.script_load(_COMMIT_LUA)
            reply = self.r.evalsha(self._commit_script.sha, len(keys), *keys, *args)
        return [bool(x) for x in reply]

    def _commands(self, outputs: Iterable[tuple[str, Envelope]],
                  state: Iterable[Sequence[str]],
                  key_no: Callable[[str], int]) -> list[list[object]]:
        commands: list[list[object]] = []
        for stream, env in outputs:
            cap = self.settings.side_maxlen if stream in SIDE_STREAMS else self.settings.maxlen
            fields = [x for kv in env.to_fields().items() for x in kv]
            commands.append(["XADD", key_no(stream), "MAXLEN", "~", str(cap), "*", *fields])
        for cmd in state:
            name, key, *rest = (str(a) for a in cmd)
            if name.upper() not in SINGLE_KEY_COMMANDS:
                raise ValueError(f"state command {name} is not a single-key command this "
                                 "commit supports (its other keys would bypass KEYS)")
            commands.append([name, key_no(key), *rest])
        return commands

    def ack(self, delivery: Delivery) -> None:
        self.r.xack(self.stream, self.group, delivery.entry_id)

    def record_failure(self, delivery: Delivery, reason: str) -> None:
        # Kept so the dead-letter entry can say why the last attempt failed, whichever
        # consumer makes the final decision.
        self.r.hset(failures_key(self.owner), delivery.entry_id, reason[:2000])

    def dead_letter(self, delivery: Delivery, reason: str, *, force: bool = False) -> str:
        """Move a pending entry to the dead-letter stream and ack it, atomically. Returns the
        dead entry's id, or "" when the entry was no longer pending (committed or
        dead-lettered by another consumer meanwhile): then nothing is written. `force`
        records an entry Redis already took off the pending list (trimmed while pending)."""
        last = self.r.hget(failures_key(self.owner), delivery.entry_id)
        if last and last not in reason:
            reason = f"{reason}; last error: {last}"
        entry = dead_entry(self.agent, delivery, reason)
        keys = [self.stream, failures_key(self.owner), DEAD_STREAM]
        args = [self.group, delivery.entry_id, "1" if force else "0",
                self.settings.side_maxlen, *(x for kv in entry.items() for x in kv)]
        try:
            dead_id = self.r.evalsha(self._dead_script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self._dead_script.sha = self.r.script_load(_DEAD_LUA)
            dead_id = self.r.evalsha(self._dead_script.sha, len(keys), *keys, *args)
        return dead_id or ""

    def trim(self) -> int:
        """XTRIM MINID to the oldest entry any group still needs. Returns entries removed."""
        groups = self.r.xinfo_groups(self.stream)
        if not groups:
            return 0
        floor: str | None = None
        for g in groups:
            candidates = [g["last-delivered-id"]]
            summary = self.r.xpending(self.stream, g["name"])
            if summary and summary.get("pending"):
                candidates.append(summary["min"])
            for c in candidates:
                if floor is None or entry_key(c) < entry_key(floor):
                    floor = c
        if floor is None or floor == "0-0":
            return 0
        return int(self.r.xtrim(self.stream, minid=floor, approximate=False))


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id as a sortable pair (ms, seq)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def dead_entry(agent: str, delivery: Delivery, reason: str) -> dict[str, str]:
    """The dead-letter record: the reason plus the untouched original fields."""
    correlation = delivery.envelope.correlation_id if delivery.envelope else \
        _best_effort_correlation(delivery.fields)
    return {
        "reason": reason,
        "agent": agent,
        "source_stream": delivery.stream,
        "source_id": delivery.entry_id,
        "deliveries": str(delivery.deliveries),
        "correlation_id": correlation or "",
        "ts": datetime.now(UTC).isoformat(),
        "original": json.dumps(delivery.fields, sort_keys=True),
    }


def _best_effort_correlation(fields: dict[str, str]) -> str | None:
    try:
        value = json.loads(fields.get("envelope", "")).get("correlation_id")
    except (ValueError, AttributeError):
        value = fields.get("correlation_id")
    return value if isinstance(value, str) and len(value) <= 64 else None
