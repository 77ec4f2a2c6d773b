"""Reading requirements.lock (pip-compile --generate-hashes output)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ark_ops.errors import OpsError
from ark_runtime.host.lockfile import lock_entries


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str
    hashes: tuple[str, ...]
    line: str  # the requirement as written, without hashes

    def render(self) -> str:
        hashes = " \\\n    ".join(f"--hash={h}" for h in self.hashes)
        return f"{self.line} \\\n    {hashes}\n"


def parse_lock(path: Path) -> dict[str, Pin]:
    """Pins by canonical name. Every pin must be `==` and carry at least one hash."""
    pins: dict[str, Pin] = {}
    for entry in lock_entries(path.read_text()):
        spec, hashes = entry.spec, entry.hashes
        req = Requirement(spec)
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise OpsError(f"{path}: {req.name} is not pinned with == ({spec})")
        if not hashes:
            raise OpsError(f"{path}: {req.name} has no --hash; regenerate with `invoke lock`")
        name = canonicalize_name(req.name)
        pins[name] = Pin(name, specs[0].version, hashes, spec)
    return pins


def lock_drift(requirements_in: Path, lock: Path) -> list[str]:
    """Why the lock no longer matches requirements.in (empty when it does) — DEPLOY_03."""
    pins = parse_lock(lock)
    problems = []
    for raw in requirements_in.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req.name} is in {requirements_in.name} but not pinned in the lock")
        elif req.specifier and not req.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{req.name} is pinned at {pin.version}, outside {req.specifier}")
    return problems
