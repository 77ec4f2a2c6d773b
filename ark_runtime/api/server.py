"""Run the API under systemd: READY=1 once the sockets listen, watchdog while alive.

Binds ARK_API_HOST and, unless that already is loopback or a wildcard, 127.0.0.1 too (a
local TLS reverse proxy and `curl` on the host reach it there). uvloop + httptools.
With a certificate (ARK_API_TLS_DIR or the unit's credentials, issue #21) uvicorn serves
HTTPS itself, and ARK_API_REDIRECT_PORT, when set, answers plain HTTP with a redirect only.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import socket
import sys

import uvicorn

from ark_runtime import systemd
from ark_runtime.api.app import create_app
from ark_runtime.api.redirect import RedirectServer, redirect_app
from ark_runtime.config import api_settings, redis_settings
from ark_runtime.exitcodes import ExitCode
from ark_runtime.settings import SettingsError

_PR_SET_DUMPABLE = 4


class NotifyingServer(uvicorn.Server):
    """uvicorn binds its sockets in startup(); only after that are we ready. With a redirect
    server (the plain-HTTP port of an HTTPS console), that one runs in the same loop."""

    def __init__(self, config: uvicorn.Config,
                 redirect: tuple[uvicorn.Server, list[socket.socket]] | None = None) -> None:
        super().__init__(config)
        self._redirect = redirect
        self._redirect_task: asyncio.Task | None = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._redirect is not None:
            server, redirect_sockets = self._redirect
            self._redirect_task = asyncio.create_task(server.serve(sockets=redirect_sockets))
        if self.started:
            systemd.notify("READY=1")
            interval = systemd.watchdog_interval()
            if interval:
                # Pinging from the event loop means a wedged loop stops the pings
                # and systemd restarts us: that is the point of the watchdog.
                self._watchdog = asyncio.create_task(self._ping(interval))

    async def _ping(self, interval: float) -> None:
        while not self.should_exit:
            systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def shutdown(self, sockets=None) -> None:
        systemd.notify("STOPPING=1")
        if self._redirect is not None and self._redirect_task is not None:
            self._redirect[0].should_exit = True
            await self._redirect_task
        await super().shutdown(sockets=sockets)


def bind_addresses(host: str) -> list[str]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return [host, "127.0.0.1"]
    if ip.is_loopback or ip.is_unspecified:
        return [host]
    return [host, "127.0.0.1"]


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def server_config(app, host: str, port: int, *, trusted_proxies: str = "",
                  **overrides) -> uvicorn.Config:
    """uvicorn as the API runs it. Proxy headers only from ARK_API_TRUSTED_PROXIES (default
    none): an X-Forwarded-For from any other peer (loopback included: every local process)
    is a claim, not an address — trusting it let one client rotate addresses past the login
    throttle."""
    options = dict(
        host=host, port=port, log_level="info", access_log=False, lifespan="on",
        loop="uvloop", http="httptools", ws="websockets-sansio",
        proxy_headers=bool(trusted_proxies), forwarded_allow_ips=trusted_proxies or "",
        timeout_graceful_shutdown=10,
    )
    options.update(overrides)
    return uvicorn.Config(app, **options)


def not_dumpable() -> None:
    """SEC_03: the API's records are believed because journald says ark-api.service sent
    them. Agents run as the same user; non-dumpable, this process cannot be ptraced or have
    its memory written (/proc/PID/mem, process_vm_writev) by them, so they cannot send
    records from inside it."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def serve() -> int:
    not_dumpable()
    try:
        settings = api_settings()
        redis_cfg = redis_settings()
    except SettingsError as exc:
        # systemd must not restart a unit whose configuration is wrong (exit 78).
        print(f"ark api: bad settings: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    try:
        sockets = [_socket(h, settings.port) for h in bind_addresses(settings.host)]
    except OSError as exc:
        print(f"ark api: cannot listen on {settings.host}:{settings.port} ({exc.strerror}); "
              "see `ark ports check`", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    app = create_app(redis_cfg)
    tls = {"ssl_certfile": settings.tls.cert, "ssl_keyfile": settings.tls.key} \
        if settings.tls else {}
    config = server_config(app, settings.host, settings.port,
                           trusted_proxies=settings.trusted_proxies, **tls)
    redirect = None
    if settings.tls and settings.redirect_port:
        try:
            plain = [_socket(h, settings.redirect_port) for h in bind_addresses(settings.host)]
        except OSError as exc:
            print(f"ark api: cannot listen on {settings.host}:{settings.redirect_port} "
                  f"({exc.strerror}); see `ark ports check`", file=sys.stderr)
            return ExitCode.UNAVAILABLE
        redirect = (RedirectServer(uvicorn.Config(
            redirect_app(settings.port, app.allowed_hosts), lifespan="off", access_log=False,
            log_level="warning", loop="uvloop", http="httptools")), plain)
    server = NotifyingServer(config, redirect)
    server.run(sockets=sockets)
    return ExitCode.OK if server.started else ExitCode.UNAVAILABLE
