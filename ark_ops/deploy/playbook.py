"""Running ansible-playbook from the repo and reading its PLAY RECAP."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ark_ops.errors import OpsError
from ark_ops.paths import REPO_ROOT

if TYPE_CHECKING:
    from ark_ops.fleet.audit import AuditIdentity

RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")


@dataclass
class PlaybookResult:
    returncode: int
    recap: dict[str, dict[str, int]] = field(default_factory=dict)
    output: str = ""

    @property
    def changed(self) -> dict[str, int]:
        return {host: counts.get("changed", 0) for host, counts in self.recap.items()}


class PlaybookFailed(OpsError):
    """ansible-playbook exited non-zero; `result` has the recap and output."""

    def __init__(self, message: str, result: PlaybookResult):
        super().__init__(message)
        self.result = result


FAILURE_LINE = re.compile(r"^(fatal|failed): \[|^\S+ \| FAILED")


def failed_tasks(output: str, *, limit: int = 2000) -> str:
    """Each failing task's header and its `fatal:`/`failed:` lines, for an error raised when the
    output was not echoed (a test's log otherwise keeps only the recap, not which task failed)."""
    found: list[list[str]] = []
    task, body = "", None
    for line in output.splitlines():
        if body is not None and line.startswith(" ") and len(body) < 40:
            body.append(line[:limit])  # the result's indented YAML (callback_result_format)
            continue
        body = None
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.rstrip(" *")
        elif FAILURE_LINE.match(line):
            body = [f"{task}\n{line[:limit]}" if task else line[:limit]]
            found.append(body)
    return "\n".join("\n".join(b) for b in found)


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    recap: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap:
            m = RECAP_LINE.match(line.strip())
            if m:
                counts = dict(kv.split("=") for kv in m.group("counts").split())
                recap[m.group("host")] = {k: int(v) for k, v in counts.items()}
    return recap


# Every playbook run the toolkit makes uses mitogen_linear (plugins/strategy) unless the
# operator asks for Ansible's own `linear` (docs/FLEET_ACCESS.md says when and why).
STRATEGY_VAR = "ARK_OPS_ANSIBLE_STRATEGY"
MITOGEN = "mitogen_linear"
STRATEGIES = (MITOGEN, "linear")


def ansible_strategy(requested: str | None = None) -> str:
    """The strategy plugin for this run: `requested`, else ARK_OPS_ANSIBLE_STRATEGY, else
    mitogen_linear. Refused with one sentence when the value is unknown or mitogen is missing
    from the venv."""
    chosen = requested or os.environ.get(STRATEGY_VAR, "").strip() or MITOGEN
    if chosen not in STRATEGIES:
        raise OpsError(f"{STRATEGY_VAR}={chosen!r} is not a strategy ark_ops runs: use one of "
                       + ", ".join(STRATEGIES))
    if chosen == MITOGEN and importlib.util.find_spec("ansible_mitogen") is None:
        raise OpsError(f"the {MITOGEN} strategy needs the `mitogen` package from "
                       f"requirements.lock: install the lock (./ops) or set {STRATEGY_VAR}=linear")
    return chosen


def ansible_env(*, one_task: bool = False, strategy: str | None = None,
                identity: AuditIdentity | None = None) -> dict[str, str]:
    """The environment of an Ansible child. `one_task`: an ad-hoc run of a single task per
    host (the deploy's fact gathering, testinfra's per-command calls) uses `linear`, since
    mitogen's per-host bootstrap only pays back over many tasks (one `setup` call measured
    3.0-4.0 s with mitogen against 1.2-2.2 s without). `strategy` overrides
    ARK_OPS_ANSIBLE_STRATEGY for this child. `identity`: the audited action's operator and
    correlation id, which the role records with the config version it leaves. The child gets
    this command's vault secrets (ark_ops.fleet.vault.child_env)."""
    from ark_ops.fleet import vault

    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        # The vault secrets this command was given, by file path (never the secret itself).
        **vault.child_env(),
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        # Set here, not only in ansible.cfg: an ANSIBLE_STRATEGY left in the operator's shell
        # must not pick the strategy behind ARK_OPS_ANSIBLE_STRATEGY's back.
        "ANSIBLE_STRATEGY": "linear" if one_task else ansible_strategy(strategy),
        "ANSIBLE_FORCE_COLOR": os.environ.get("ANSIBLE_FORCE_COLOR", "0"),
        # testinfra's ansible backend and our tasks call ansible-* from the venv.
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        **(identity.env() if identity else {}),
    }


def run_playbook(playbook: str, inventory: Path, *, limit: str | None = None,
                 check: bool = False, extra_args: list[str] | None = None,
                 echo: bool = True, strategy: str | None = None,
                 identity: AuditIdentity | None = None) -> PlaybookResult:
    exe = Path(sys.executable).parent / "ansible-playbook"
    cmd = [str(exe), "-i", str(inventory), str(REPO_ROOT / "playbooks" / playbook)]
    if limit:
        cmd += ["--limit", limit]
    if check:
        cmd += ["--check", "--diff"]
    cmd += extra_args or []
    # stdin=DEVNULL: ansible-playbook refuses a non-blocking stdin, and an inherited one can
    # be left non-blocking by any other child (ssh sets O_NONBLOCK on the shared descriptor).
    env = ansible_env(strategy=strategy, identity=identity)
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()
    rc = proc.wait()
    output = "".join(lines)
    result = PlaybookResult(rc, parse_recap(output), output)
    if rc != 0:
        where = ("the failing task is shown above" if echo
                 else (failed_tasks(output) or output[-3000:]) + "\n" + output[-1500:])
        raise PlaybookFailed(f"{playbook} failed (ansible-playbook exit {rc}): {where}", result)
    return result
