"""ARK's systemd units: their state, and start/stop/restart for admins.

The API runs as the unprivileged `ark` user. `systemctl` asks systemd over D-Bus; a polkit
rule (roles/ark_runtime/templates/polkit/50-ark-units.rules.j2) lets user `ark` manage only
units named ark.target / ark-*.service / ark-*.timer and nothing else. Why polkit rather
than a root helper: no new privileged code to get wrong, NoNewPrivileges stays on the API,
the allow-list is enforced by systemd/polkit outside the API process, and the API's own
`systemd-analyze security` score does not move.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Protocol

from ark_runtime import systemd

UNIT = re.compile(r"^(ark\.target|ark-[a-z0-9-]+(@[a-z0-9_-]+)?\.(service|timer))$")
VERBS = ("start", "stop", "restart")
PROPS = ("Id", "ActiveState", "SubState", "ActiveEnterTimestamp", "NRestarts", "MainPID")


class UnitError(RuntimeError):
    status = 503  # systemd did not do it


class UnitNotFound(UnitError):
    status = 404


class UnitDenied(UnitError):
    status = 403  # polkit said no: not one of ARK's units, or the rule is missing


def classify(message: str) -> UnitError:
    lowered = message.lower()
    if "not loaded" in lowered or "not found" in lowered:
        return UnitNotFound(message)
    if "access denied" in lowered or "authentication required" in lowered:
        return UnitDenied(message)
    return UnitError(message)


def valid_unit(name: str) -> bool:
    return bool(UNIT.fullmatch(name))


class UnitSource(Protocol):
    async def status(self) -> list[dict[str, str]]: ...

    async def control(self, unit: str, verb: str) -> None: ...


def parse_show(text: str) -> list[dict[str, str]]:
    """ARK's units in `systemctl show` output (anything else is dropped)."""
    return [u for u in systemd.parse_show(text) if valid_unit(u.get("Id", ""))]


async def _run(*argv: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        raise UnitError(f"{argv[0]} {argv[1]} timed out after {timeout:.0f} s") from None
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


class SystemctlUnits:
    """The real source: `systemctl` over systemd's D-Bus API."""

    def __init__(self, systemctl: str = "systemctl") -> None:
        self.systemctl = systemctl

    async def _names(self) -> Sequence[str]:
        code, out, err = await _run(self.systemctl, "list-units", "--all", "--plain",
                                    "--no-legend", "--no-pager", "ark.target", "ark-*")
        if code:
            raise UnitError(f"systemctl list-units failed: {err.strip()[:200]}")
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    async def status(self) -> list[dict[str, str]]:
        names = [n for n in await self._names() if valid_unit(n)]
        if not names:
            return []
        code, out, err = await _run(self.systemctl, "show", "--no-pager",
                                    "--property=" + ",".join(PROPS), *names)
        if code:
            raise UnitError(f"systemctl show failed: {err.strip()[:200]}")
        return parse_show(out)

    async def control(self, unit: str, verb: str) -> None:
        if verb not in VERBS or not valid_unit(unit):
            raise UnitError(f"refusing {verb} {unit}: not an ARK unit or verb")
        code, _out, err = await _run(self.systemctl, "--no-ask-password", verb, unit)
        if code:
            raise classify(f"systemctl {verb} {unit} failed: {err.strip()[:300]}")


class CachedUnits:
    """Shares one `systemctl` query among all callers within `ttl_s`: a room of operators
    (or a load test) polling the status page costs one subprocess per interval, not one
    per request. Control calls pass straight through and drop the cache."""

    def __init__(self, source: UnitSource, ttl_s: float = 1.0) -> None:
        self.source, self.ttl_s = source, ttl_s
        self._at = -1e9
        self._value: list[dict[str, str]] = []
        self._error: UnitError | None = None  # a failing systemctl is cached too
        self._lock = asyncio.Lock()

    async def status(self) -> list[dict[str, str]]:
        async with self._lock:
            if asyncio.get_running_loop().time() - self._at >= self.ttl_s:
                try:
                    self._value, self._error = await self.source.status(), None
                except UnitError as exc:
                    self._value, self._error = [], exc
                self._at = asyncio.get_running_loop().time()
            if self._error is not None:
                raise UnitError(str(self._error))
            return [dict(u) for u in self._value]

    async def control(self, unit: str, verb: str) -> None:
        self._at = -1e9
        try:
            await self.source.control(unit, verb)
        finally:
            self._at = -1e9  # the next status shows the unit's new state
