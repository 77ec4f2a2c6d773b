"""The pipeline as the console shows it: per agent the inbox depth, pending entries and a
heartbeat age; the pause, panic and circuit-breaker state.

Heartbeat age is the idle time Redis reports for the agent's consumer (XINFO CONSUMERS): on
Redis 7.2+ a live agent re-reads every `block_ms`, so it stays under a second and a wedged or
dead agent's grows; on Redis 7.0 (Debian 12) it is the time since the last delivery.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ark_runtime.bus.errors import PAUSE_KEY
from ark_runtime.bus.keys import risk_state_key
from ark_runtime.bus.registry import PIPELINE
from ark_runtime.bus.shards import MAX_SHARDS, SHARDED_AGENT, shard_name
from ark_runtime.bus.streams import DEAD_STREAM, inbox
from ark_runtime.host.layout import panic_flag
from ark_runtime.hrm.risk import parse_risk_state


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
    # HRM's risk state as it published it in Redis (AGENT_04): the same on every host, an API
    # host without HRM's store included; null until HRM has run against this Redis.
    risk = parse_risk_state(await redis.get(risk_state_key()))
    return {"agents": agents, "paused": pauses, "dead_letters": await redis.xlen(DEAD_STREAM),
            "breakers": risk, **panic_state()}


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
