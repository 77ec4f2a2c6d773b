"""HTTP endpoints. `/health` proves the process is up *and* can reach Redis."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from ark_runtime import __version__
from ark_runtime.config import RedisSettings, redis_settings


def create_app(redis_cfg: RedisSettings | None = None) -> FastAPI:
    cfg = redis_cfg or redis_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.redis = aioredis.Redis(
            host=cfg.host, port=cfg.port, password=cfg.password, db=cfg.db,
            username=cfg.username, ssl=cfg.ssl,
            socket_connect_timeout=2, socket_timeout=2,
        )
        try:
            yield
        finally:
            await app.state.redis.aclose()

    app = FastAPI(title="ARK reasoning API", version=__version__, lifespan=lifespan)

    @app.get("/health")
    async def health() -> JSONResponse:
        started = time.perf_counter()
        try:
            await app.state.redis.ping()
        except Exception as exc:  # any failure to reach Redis makes us unhealthy
            return JSONResponse(
                status_code=503,
                content={"status": "degraded", "version": __version__,
                         "redis": {"ok": False, "error": type(exc).__name__}},
            )
        rtt_ms = (time.perf_counter() - started) * 1000
        return JSONResponse(
            content={"status": "ok", "version": __version__,
                     "redis": {"ok": True, "rtt_ms": round(rtt_ms, 3)}},
        )

    return app
