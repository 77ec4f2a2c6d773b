"""The pipeline as the console shows it: per agent the inbox depth, pending entries and a
heartbeat age; the pause, panic and circuit-breaker state.

Heartbeat age is the idle time Redis reports for the agent's consumer (XINFO CONSUMERS): on
Redis 7.2+ a live agent re-reads every `block_ms`, so it stays under a second and a wedged or
dead agent's grows; on Redis 7.0 (Debian 12) it is the time since the last delivery.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from ark_runtime.bus.errors import PAUSE_KEY
from ark_runtime.bus.registry import PIPELINE
from ark_runtime.bus.shards import MAX_SHARDS, SHARDED_AGENT, shard_name
from ark_runtime.bus.streams import DEAD_STREAM, inbox
from ark_runtime.host.layout import panic_flag, store_path
from ark_runtime.store import BREAKER_STATE_KEY


async def _agent(redis: Any, agent: str, group_name: str | None = None) -> dict[str, Any]:
    stream, group_name = inbox(agent), group_name or agent
    row: dict[str, Any] = {"agent": agent, "depth": 0, "pending": 0, "lag": None,
                           "heartbeat_age_s": None, "consumers": 0}
    if not await redis.exists(stream):
        return row
    row["depth"] = await redis.xlen(stream)
    for group in await redis.xinfo_groups(stream):
        if _s(group.get("name")) != group_name:
            continue
        row["pending"], row["lag"] = group.get("pending", 0), group.get("lag")
        consumers = await redis.xinfo_consumers(stream, group_name)
        row["consumers"] = len(consumers)
        # `idle`: on Redis 7.2+ the time since the consumer's last read attempt (liveness);
        # on 7.0 (Debian 12) since its last delivery, so an idle pipeline shows a growing age.
        idle = [c.get("idle") for c in consumers]
        idle = [i for i in idle if isinstance(i, int) and i >= 0]
        if idle:
            row["heartbeat_age_s"] = round(min(idle) / 1000, 3)
    return row


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def breaker_state(db: Path | None = None) -> dict[str, Any] | None:
    db = db or store_path()
    if not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = con.execute("SELECT value FROM state WHERE key = ?",
                              (BREAKER_STATE_KEY,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        return {"error": f"store unreadable: {type(exc).__name__}"}
    return json.loads(row[0]) if row else {}


def panic_state(flag: Path | None = None) -> dict[str, Any]:
    flag = flag or panic_flag()
    if not flag.exists():
        return {"panic": False}
    try:
        text = flag.read_text(errors="replace")[:500]
    except OSError:
        text = ""
    return {"panic": True, "detail": text.strip()}


async def pipeline_status(redis: Any) -> dict[str, Any]:
    agents = [await _agent(redis, a) for a in PIPELINE]
    # Joey's shards past the first (ARK_JOEY_SHARDS > 1), listed after joey while they exist.
    at = PIPELINE.index(SHARDED_AGENT) + 1
    for k in range(1, MAX_SHARDS):
        if not await redis.exists(inbox(shard_name(k))):
            break
        agents.insert(at + k - 1, await _agent(redis, shard_name(k), SHARDED_AGENT))
    pauses = {_s(k): json.loads(v) for k, v in (await redis.hgetall(PAUSE_KEY)).items()}
    return {"agents": agents, "paused": pauses, "dead_letters": await redis.xlen(DEAD_STREAM),
            "breakers": breaker_state(), **panic_state()}


class SharedStatus:
    """One pipeline query per `ttl_s` shared by every caller (a status page polled by many
    operators, or a load test, must not multiply Redis round trips)."""

    def __init__(self, redis: Any, ttl_s: float = 1.0) -> None:
        import asyncio

        self.redis, self.ttl_s = redis, ttl_s
        self._lock = asyncio.Lock()
        self._at, self._value = -1e9, None

    def invalidate(self) -> None:
        self._at = -1e9  # after an admin action the next page poll shows its effect

    async def get(self) -> dict[str, Any]:
        import time

        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.ttl_s:
                self._value = await pipeline_status(self.redis)
                self._at = time.monotonic()
            return self._value
