"""The control node's systemd timer for off-host DR backups (REC_03).

The signing key and the restic password live on the control node, so the schedule does too:
`ark-offsite-backup@<inventory>.timer` runs `invoke offsite.backup --inventory <dir>` from this
checkout. The units are checked with `systemd-analyze verify` before they are written.
"""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ark_ops.errors import OpsError
from ark_ops.paths import REPO_ROOT

_CALENDAR = re.compile(r"[A-Za-z0-9 :*/,.~-]{1,64}")

SERVICE = """\
[Unit]
Description=ARK off-host DR backup of {inventory} (REC_03)
Documentation=file://{repo}/LAUNCH.md
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
User={user}
WorkingDirectory={repo}
Environment=ARK_ACTOR=timer:{user}
ExecStart={repo}/.venv/bin/invoke offsite.backup --inventory {inventory}
Nice=10
IOSchedulingClass=idle
TimeoutStartSec=2h
"""

TIMER = """\
[Unit]
Description=Daily ARK off-host DR backup of {inventory} (REC_03)

[Timer]
OnCalendar={on_calendar}
RandomizedDelaySec=15min
Persistent=true

[Install]
WantedBy=timers.target
"""


def unit_name(inventory: Path) -> str:
    """One timer per inventory, named after its directory (systemd-escaped by hand: a-z0-9-)."""
    inv_dir = inventory if inventory.is_dir() else inventory.parent
    slug = re.sub(r"[^a-z0-9]+", "-", inv_dir.name.lower()).strip("-") or "inventory"
    return f"ark-offsite-backup-{slug}"


def render(inventory: Path, on_calendar: str = "daily", user: str | None = None,
           repo: Path = REPO_ROOT) -> dict[str, str]:
    if not _CALENDAR.fullmatch(on_calendar):
        raise OpsError(f"--on-calendar is not a systemd calendar expression: {on_calendar!r:.60}")
    inventory = inventory.resolve()
    if not inventory.exists():
        raise OpsError(f"inventory {inventory} does not exist")
    if any(c.isspace() or c in "%\\\"'$" for c in str(inventory) + str(repo)):
        raise OpsError("the inventory and checkout paths must not hold spaces, quotes, % or $ "
                       "(they go into a unit's ExecStart=)")
    fields = {"inventory": inventory, "repo": repo, "user": user or getpass.getuser(),
              "on_calendar": on_calendar}
    name = unit_name(inventory)
    return {f"{name}.service": SERVICE.format(**fields), f"{name}.timer": TIMER.format(**fields)}


def verify_units(units: dict[str, str]) -> None:
    """systemd-analyze verify on the pair, in a scratch directory, before they land."""
    if shutil.which("systemd-analyze") is None:
        raise OpsError("systemd-analyze is missing: install systemd")
    with tempfile.TemporaryDirectory(prefix="ark-offsite-units-") as tmp:
        for name, text in units.items():
            (Path(tmp) / name).write_text(text)
        proc = subprocess.run(["systemd-analyze", "verify", *sorted(units)], cwd=tmp,
                              capture_output=True, text=True, timeout=120)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if line.strip() and "network-online.target" not in line]
    if proc.returncode != 0 or problems:
        raise OpsError("the timer units do not verify:\n" + "\n".join(problems[-10:]))


def install(inventory: Path, on_calendar: str = "daily", dest: Path = Path("/etc/systemd/system"),
            user: str | None = None) -> list[Path]:
    units = render(inventory, on_calendar, user)
    verify_units(units)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        (dest / name).write_text(text)
        written.append(dest / name)
    return written
