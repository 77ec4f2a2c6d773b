"""Reading the bus and the store back, for assertions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.streams import DEAD_STREAM, DECISIONS_STREAM, done_key
from ark_runtime.market import Bar, write_jsonl
from ark_runtime.store import MemoryStore
from ark_runtime.trace import expand_hops


def envelopes(r: redis.Redis, stream: str) -> list[Envelope]:
    return [Envelope.from_fields(f) for _id, f in r.xrange(stream)]


def decisions(r: redis.Redis) -> list[Envelope]:
    return envelopes(r, DECISIONS_STREAM)


def dead(r: redis.Redis) -> list[dict[str, str]]:
    return [f for _id, f in r.xrange(DEAD_STREAM)]


def processed_total(r: redis.Redis, agent: str) -> int:
    return sum(1 for _ in r.scan_iter(done_key(agent, "*"), count=1000))


def pending(r: redis.Redis, agent: str) -> int:
    """Entries of the agent's inbox not yet acked: delivered-but-pending plus undelivered."""
    stream = f"ark:stream:{agent}"
    try:
        groups = r.xinfo_groups(stream)
        last_id = r.xinfo_stream(stream)["last-generated-id"]
    except redis.ResponseError:
        return 0
    total = 0
    for g in groups:
        lag = g.get("lag")
        if lag is None:
            # Redis cannot count the lag once entries were trimmed or deleted: then a group
            # that has not been delivered the last entry still has work.
            lag = 0 if g["last-delivered-id"] == last_id else 1
        total += g["pending"] + lag
    return total


def kyle_cursor(r: redis.Redis) -> int:
    """How far Kyle's feed cursor got (0 when Redis is down or has none)."""
    try:
        key = next(r.scan_iter("ark:kyle:cursor:*"), None)
        return int(r.get(key) or 0) if key else 0
    except redis.ConnectionError:
        return 0


def drained(r: redis.Redis, bars: int, expected: int) -> bool:
    """Kyle read all `bars`, nothing waits in Joey's, Kenny's or HRM's group, and at least
    `expected` decisions are out (False while Redis is down)."""
    try:
        idle = all(pending(r, n) == 0 for n in ("joey", "kenny", "hrm"))
        return kyle_cursor(r) >= bars and idle and r.xlen(DECISIONS_STREAM) >= expected
    except redis.ConnectionError:
        return False


def store_decisions(state_dir: str) -> list[dict[str, Any]]:
    with MemoryStore(Path(state_dir) / "memory.db") as store:
        return store.decisions()


def store_ledger(state_dir: str) -> list[dict[str, Any]]:
    with MemoryStore(Path(state_dir) / "memory.db") as store:
        return store.ledger()


def write_feed(path: Path, bars: list[Bar], bad_lines: dict[int, str] | None = None) -> Path:
    """JSONL feed; `bad_lines` inserts raw text before the given bar index."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(bars, path)
    if bad_lines:
        lines = path.read_text().splitlines()
        for index in sorted(bad_lines, reverse=True):
            lines.insert(index, bad_lines[index])
        path.write_text("\n".join(lines) + "\n")
    return path


def log_lines(log_dir: str, agent: str) -> list[dict[str, Any]]:
    path = Path(log_dir) / f"{agent}.log"
    if not path.exists():
        return []
    # Batch lines (one per commit, listing each message's hop) expanded as `ark trace` does.
    return [hop for x in path.read_text().splitlines() if x.strip()
            for hop in expand_hops(json.loads(x))]
