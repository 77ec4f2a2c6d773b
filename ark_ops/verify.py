"""invoke verify: the testinfra compliance suite against an inventory."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ark_ops.ansible_run import ansible_env
from ark_ops.inventories import REPO_ROOT, resolve_inventory
from ark_ops.redact import Redactor, inventory_secrets

REPORTS = REPO_ROOT / "reports"


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def testinfra_become(inv: Path, limit: str | None
                     ) -> tuple[str, dict[str, str], list[str]]:
    """How testinfra should escalate, from the same derivation the other fleet commands use
    (ark_ops.hostaccess; a bad ansible_become* value stops here with its name).

    testinfra's ansible backend reads ansible_become / ansible_become_user itself but no
    become password, and it does not escalate a non-root user whose inventory leaves
    ansible_become unset (the deploy playbook does). So: with a become password, testinfra
    runs every command through Ansible (`force_ansible`: slower, but Ansible answers sudo);
    when every host escalates, ANSIBLE_BECOME* say so for all of them.
    Returns (the host spec's query string, extra environment, become passwords to mask)."""
    from ark_ops.errors import OpsError
    from ark_ops.fleet import inventory_hosts
    from ark_ops.hostaccess import InventoryVarError

    try:
        hosts = inventory_hosts(inv, limit)
    except InventoryVarError:
        raise
    except OpsError:  # no hosts match: pytest's own collection says so
        hosts = []
    passwords = [h.become.password for h in hosts if h.become.enabled and h.become.password]
    if passwords:
        return "?force_ansible=True", {}, passwords
    users = {h.become.user for h in hosts if h.become.enabled}
    if hosts and all(h.become.enabled for h in hosts) and len(users) == 1:
        return "", {"ANSIBLE_BECOME": "true", "ANSIBLE_BECOME_USER": users.pop()}, []
    return "", {}, []


def verify(inventory: str | None = None, limit: str | None = None, disruptive: bool = False,
           keyword: str | None = None, reports_dir: Path = REPORTS, log=print,
           echo: Callable[[str], None] | None = None) -> int:
    """Run tests/compliance; returns pytest's exit code (0 only when all passed).

    The suite's own plugin (ark_ops.report) masks secrets in what it reports; its console
    output also passes through a mask of the inventory's secrets here, line by line, so
    nothing pytest prints outside a test report (an internal error) can carry one either.
    """
    inv = resolve_inventory(inventory, log)
    query, become_env, passwords = testinfra_become(inv, limit)
    echo = echo or _write_stdout
    stamp = time.strftime("%Y%m%dT%H%M%S")
    reports_dir.mkdir(parents=True, exist_ok=True)
    junit = reports_dir / f"compliance-{stamp}.xml"
    markdown = reports_dir / f"compliance-{stamp}.md"
    cmd = [
        sys.executable, "-m", "pytest", str(REPO_ROOT / "tests" / "compliance"),
        "-p", "ark_ops.report", "-p", "no:cacheprovider",
        f"--hosts=ansible://{limit or 'ark'}{query}", f"--ansible-inventory={inv}",
        f"--junitxml={junit}", f"--requirements-report={markdown}",
        "-o", "junit_family=xunit2", "-q",
    ]
    if disruptive:
        cmd.append("--disruptive")
    if keyword:
        cmd += ["-k", keyword]
    redact = Redactor([*inventory_secrets(Path(inv)), *passwords])
    with subprocess.Popen(cmd, cwd=REPO_ROOT, env={**ansible_env(), **become_env},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace") as proc:
        for line in proc.stdout:
            echo(redact(line))
    rc = proc.returncode
    for name, target in (("compliance-latest.md", markdown), ("compliance-latest.xml", junit)):
        link = reports_dir / name
        link.unlink(missing_ok=True)
        if target.exists():
            link.symlink_to(target.name)
    log(f"JUnit: {junit}\nMarkdown: {markdown}")
    return rc
