"""The API and operator console: an ASGI app (FastAPI) served by uvicorn under systemd.

Public: /health, /metrics, /login (page and form), /openapi.json and /static. Everything
else needs a signed-in operator (auth.py); admin actions need role admin and the CSRF token.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis
from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from ark_runtime import __version__, settings
from ark_runtime.api import admin, auth, console, errors, guard
from ark_runtime.api.chatter import Hub
from ark_runtime.api.health import CachedPing, health_body
from ark_runtime.api.operators import Operator, load_operators, operators_path
from ark_runtime.api.pipeline import SharedStatus
from ark_runtime.api.redirect import host_name
from ark_runtime.api.sessions import SessionManager
from ark_runtime.api.units import CachedUnits, SystemctlUnits, UnitSource
from ark_runtime.bus.clients import async_redis_client, redis_client
from ark_runtime.config import RedisSettings, api_settings, redis_settings

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"),
]


# Pages and API answers carry operator data: no browser or proxy may keep a copy.
NO_STORE = [(b"cache-control", b"no-store")]


class HealthOut(BaseModel):
    status: str
    version: str
    redis: dict[str, Any]


class FastPaths:
    """Pure ASGI front: answers GET /health from the cached ping without the framework's
    routing and dependency machinery (it is the hottest path), and adds the security headers
    to everything else."""

    def __init__(self, app: FastAPI, allowed_hosts: frozenset[str]) -> None:
        self.app, self.allowed_hosts = app, allowed_hosts

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket") and not self._host_ok(scope):
            # DNS rebinding: a page on evil.example whose name now points here may not
            # talk to the console as if it were same-origin.
            if scope["type"] == "http":
                await guard.refuse(send, 400, "Host header names no address of this console")
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] == "http" and scope["path"] == "/health" and \
                scope["method"] in ("GET", "HEAD"):
            status, body = health_body(await self.app.state.ping.get())
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                (b"content-length", str(len(body)).encode()), *_hsts(scope)]})
            await send({"type": "http.response.body",
                        "body": body if scope["method"] == "GET" else b""})
            return
        if scope["type"] == "websocket":
            # uvicorn's protocol object is `send`'s owner: its transport lets the chatter
            # feed abort a client that stops reading (chatter._abort).
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is not None:
                scope["ark.transport"] = transport
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        extra = SECURITY_HEADERS if scope["path"].startswith("/static/") else \
            SECURITY_HEADERS + NO_STORE
        extra = extra + _hsts(scope)

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"cache-control"]
                message["headers"] = headers + extra
            await send(message)

        if guard.has_body(scope):  # size limit and sign-in before any byte is read
            await guard.guard_body(self.app, self.app.state.auth.sessions, scope, receive,
                                   with_headers)
            return
        await self.app(scope, receive, with_headers)

    def _host_ok(self, scope: dict) -> bool:
        return host_name(scope) in self.allowed_hosts


# Issue #21: over HTTPS, browsers are told to come back only over HTTPS (two years).
HSTS = [(b"strict-transport-security", b"max-age=63072000")]


def _hsts(scope: dict) -> list[tuple[bytes, bytes]]:
    return HSTS if scope.get("scheme") in ("https", "wss") else []


async def _housekeeping(state: auth.AuthState, every_s: float = 5.0) -> None:
    while True:
        await asyncio.sleep(every_s)
        state.refresh(every_s=0)
        state.sessions.sweep()


def default_hosts(bind: str) -> frozenset[str]:
    """The names a browser may use for this console: its bind address, loopback, and this
    host's own name and FQDN."""
    import socket

    names = {bind, "127.0.0.1", "localhost", "[::1]", socket.gethostname(), socket.getfqdn()}
    return frozenset(n.lower() if ":" not in n or n.startswith("[") else f"[{n.lower()}]"
                     for n in names if n)


def create_app(redis_cfg: RedisSettings | None = None, *, secret: str | None = None,
               operators: dict[str, Operator] | None = None,
               units: UnitSource | None = None, login_limit: int = 10,
               allowed_hosts: frozenset[str] | None = None) -> FastPaths:
    cfg = redis_cfg or redis_settings()
    if secret is None:
        value = settings.get("ARK_API_SECRET")  # SettingsError names it when malformed
        secret = value.get_secret_value() if value is not None else ""

    def sync_redis() -> redis.Redis:
        return redis_client(cfg, socket_connect_timeout=2, socket_timeout=5,
                            decode_responses=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.redis = async_redis_client(cfg, socket_connect_timeout=2, socket_timeout=5,
                                             decode_responses=True)
        # The chatter reader blocks on XREAD: its own connection so it never holds up others.
        app.state.hub = Hub(async_redis_client(cfg, socket_connect_timeout=2,
                                               decode_responses=True))
        app.state.ping = CachedPing(app.state.redis)
        app.state.pipeline = SharedStatus(app.state.redis)
        app.state.hub.start()
        # Ends expired and idle sessions (closing their sockets) and picks up a changed
        # operators.json even while nobody makes a request.
        housekeeping = asyncio.create_task(_housekeeping(app.state.auth))
        # Everything alive now (modules, the app, its schema) lives as long as the process:
        # out of the collector's reach, a full collection walks only what requests make —
        # one over the whole heap stalled the event loop ~33 ms, the chatter feed's p99.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # collectable again once the app is gone (tests make many apps)
            housekeeping.cancel()
            app.state.auth.refusals.flush()
            await app.state.hub.stop()
            await app.state.hub.redis.aclose()
            await app.state.redis.aclose()

    app = FastAPI(title="ARK reasoning API and operator console", version=__version__,
                  lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json")
    if operators is None:
        app.state.auth = auth.AuthState(SessionManager(secret), load_operators(),
                                        operators_file=operators_path())
        app.state.auth.refresh(every_s=0)  # remember the file's stamp
    else:
        app.state.auth = auth.AuthState(SessionManager(secret), operators)
    app.state.auth.throttle.set_client_limit(login_limit)
    app.state.units = CachedUnits(units or SystemctlUnits())
    app.state.sync_redis = sync_redis
    errors.install(app)

    @app.get("/health", response_model=HealthOut, tags=["public"],
             responses={503: {"model": HealthOut, "description": "Redis unreachable"}})
    async def health() -> Response:  # served by FastPaths; here for the schema and HEAD
        status, body = health_body(await app.state.ping.get())
        return Response(body, status_code=status, media_type="application/json")

    @app.get("/metrics", tags=["public"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(auth.router)
    app.include_router(console.router)
    app.include_router(admin.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    if allowed_hosts is None:
        allowed_hosts = default_hosts(api_settings().host)
    front = FastPaths(app, frozenset(h.lower() for h in allowed_hosts))
    front.state = app.state  # tests and the server reach the app's state through the front
    return front
