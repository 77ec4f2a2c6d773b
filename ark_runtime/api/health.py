"""`/health`: the process is up and Redis answers. The Redis ping is cached for a short
interval (one in-flight ping shared by concurrent callers), so a load balancer hammering
/health costs Redis one round trip per interval, not one per request."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ark_runtime import __version__


class CachedPing:
    def __init__(self, redis: Any, ttl_s: float = 1.0) -> None:
        self.redis, self.ttl_s = redis, ttl_s
        self._at = -1e9
        self._result: dict[str, Any] = {}
        self._inflight: asyncio.Future | None = None

    async def _ping(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            await self.redis.ping()
        except Exception as exc:  # any failure to reach Redis makes us unhealthy
            return {"ok": False, "error": type(exc).__name__}
        return {"ok": True, "rtt_ms": round((time.perf_counter() - started) * 1000, 3)}

    async def get(self) -> dict[str, Any]:
        """The cached result; once it is older than ttl_s, one background ping refreshes it
        while callers keep getting the last answer (only the very first call waits), so a
        slow or unreachable Redis never makes /health itself slow."""
        if self._inflight is None and time.monotonic() - self._at >= self.ttl_s:
            self._inflight = asyncio.ensure_future(self._refresh())
        if not self._result:
            await asyncio.shield(self._inflight)
        return self._result

    async def _refresh(self) -> None:
        try:
            self._result = await self._ping()
            self._at = time.monotonic()
        finally:
            self._inflight = None

def health_body(redis_state: dict[str, Any]) -> tuple[int, bytes]:
    import json

    status = "ok" if redis_state.get("ok") else "degraded"
    payload = {"status": status, "version": __version__, "redis": redis_state}
    return (200 if status == "ok" else 503), json.dumps(payload).encode()
