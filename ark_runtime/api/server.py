"""Run the API under systemd: READY=1 once the socket listens, watchdog while alive."""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from ark_runtime import systemd
from ark_runtime.api.app import create_app
from ark_runtime.config import api_settings, redis_settings
from ark_runtime.exitcodes import ExitCode
from ark_runtime.settings import SettingsError


class NotifyingServer(uvicorn.Server):
    """uvicorn binds its sockets in startup(); only after that are we ready."""

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
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
        await super().shutdown(sockets=sockets)


def serve() -> int:
    try:
        settings = api_settings()
        redis_cfg = redis_settings()
    except SettingsError as exc:
        # systemd must not restart a unit whose configuration is wrong (exit 78).
        print(f"ark api: bad settings: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    config = uvicorn.Config(
        create_app(redis_cfg), host=settings.host, port=settings.port,
        log_level="info", access_log=False, lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = NotifyingServer(config)
    server.run()
    return ExitCode.OK if server.started else ExitCode.UNAVAILABLE
