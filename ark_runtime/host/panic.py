"""REC_01 (host side): the one panic - `invoke panic` over SSH and the console's
`/api/admin/panic` both run `panic.sh` next to this module.

The script is POSIX sh + systemctl, so it works when Redis is down or the venv is broken:
the flag first, fsynced (every ARK unit has ConditionPathExists=!flag, and those with Restart=
an ExecCondition= on it), then SIGKILL of every process of every active ARK unit through
systemd, then of anything left of the ARK user.
It prints `killed UNIT` lines, `remaining N`, `elapsed_ms N` and `warning:`/`note:` lines,
which `parse_panic_output` reads into a `PanicReport` (the same for both callers).

The console's API is one of the units it kills. It asks the script to spare its own unit
(`spare_unit`), answers, and then runs the script again without sparing anything.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ark_runtime.host import layout

SCRIPT_NAME = "panic.sh"
TIMEOUT = 30


def script_text() -> str:
    return resources.files(__package__).joinpath(SCRIPT_NAME).read_text()


@dataclass
class PanicReport:
    killed: list[str] = field(default_factory=list)
    remaining: int = -1
    host_ms: int = -1
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.remaining == 0

    def summary(self) -> str:
        """One line, as `invoke panic` prints it for a host."""
        return (f"KILLED {len(self.killed)} unit(s) in {self.host_ms / 1000:.2f}s "
                f"({', '.join(self.killed) or 'none running'}); {self.remaining} ARK "
                f"process(es) remaining")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_panic_output(text: str) -> PanicReport:
    report = PanicReport()
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key == "killed":
            report.killed.append(rest)
        elif key == "remaining":
            report.remaining = int(rest)
        elif key == "elapsed_ms":
            report.host_ms = int(rest)
        elif key in ("warning:", "note:"):
            report.warnings.append(rest)
    return report


def panic(who: str, *, spare_unit: str | None = None, state_dir: Path | None = None,
          user: str | None = None, timeout: float = TIMEOUT) -> PanicReport:
    """Run the panic on this host: flag `state_dir`/PANIC (fsynced), SIGKILL every ARK unit
    (but `spare_unit`) and every process of `user` (default: the one running this; for the
    console that is the API's own user, which can signal no agent's process: the agents
    die through systemd, and a stray process of user ark only `invoke panic`, as root,
    reaches; root is never a target)."""
    state = state_dir or layout.resolve().state
    user = user or pwd.getpwuid(os.geteuid()).pw_name
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "ARK_STATE": str(state), "ARK_USER": user,
           "ARK_PANIC_SPARE": spare_unit or ""}
    proc = subprocess.run(["sh", "-c", script_text(), SCRIPT_NAME, who], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    report = parse_panic_output(proc.stdout)
    if proc.returncode != 0 or report.remaining < 0:
        report.warnings.append(f"panic.sh exit {proc.returncode}: "
                               f"{proc.stderr.strip()[-300:]}")
    return report
