"""The control node's systemd timer for off-host DR backups (REC_03).

The signing key and the restic password live on the control node, so the schedule does too:
`ark-offsite-backup-<inventory>.timer` runs `invoke offsite.backup --inventory <dir>` from this
checkout. The units are checked with `systemd-analyze verify` before they are written; on a
control node run by systemd they are then enabled and started, otherwise the commands to do so
are printed.
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
_TIMESPAN = re.compile(r"[0-9][0-9a-z ]{0,31}")  # systemd.time(7): 0, 15min, 1h 30min
SYSTEM_UNITS = Path("/etc/systemd/system")

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
RandomizedDelaySec={randomized_delay}
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
           repo: Path = REPO_ROOT, randomized_delay: str = "15min") -> dict[str, str]:
    if not _CALENDAR.fullmatch(on_calendar):
        raise OpsError(f"--on-calendar is not a systemd calendar expression: {on_calendar!r:.60}")
    if not _TIMESPAN.fullmatch(randomized_delay):
        raise OpsError("--randomized-delay is not a systemd time span (e.g. 0, 15min, 1h): "
                       f"{randomized_delay!r:.60}")
    inventory = inventory.resolve()
    if not inventory.exists():
        raise OpsError(f"inventory {inventory} does not exist")
    if any(c.isspace() or c in "%\\\"'$" for c in str(inventory) + str(repo)):
        raise OpsError("the inventory and checkout paths must not hold spaces, quotes, % or $ "
                       "(they go into a unit's ExecStart=)")
    fields = {"inventory": inventory, "repo": repo, "user": user or getpass.getuser(),
              "on_calendar": on_calendar, "randomized_delay": randomized_delay}
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


def install(inventory: Path, on_calendar: str = "daily", dest: Path = SYSTEM_UNITS,
            user: str | None = None, randomized_delay: str = "15min") -> list[Path]:
    units = render(inventory, on_calendar, user, randomized_delay=randomized_delay)
    verify_units(units)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        (dest / name).write_text(text)
        written.append(dest / name)
    return written


def systemd_runs_here() -> bool:
    """sd_booted(3): systemd is PID 1 on this machine."""
    return Path("/run/systemd/system").is_dir()


def activate(timer: str) -> None:
    """daemon-reload, then enable the timer and start it now."""
    for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", timer]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise OpsError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): "
                           + proc.stderr.strip()[-400:])
