"""invoke verify: the testinfra compliance suite against an inventory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ark_ops.deploy.playbook import ansible_env
from ark_ops.fleet.audit import AuditIdentity, audit_action, maybe
from ark_ops.inventories import resolve_inventory
from ark_ops.paths import ANSIBLE_CONTROL_DIR, REPO_ROOT
from ark_ops.redact import Redactor, inventory_secrets
from ark_ops.verify.html import write_report

REPORTS = REPO_ROOT / "reports"
# Workers are mostly waiting on ssh, so one per host pays off even on 2 cores; past this
# many the control node's CPU, not the hosts, sets the pace.
MAX_WORKERS = 8
HISTORY_NAME = "compliance-history.json"  # the trend: one entry per run, newest last


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def fleet_of(inventory: Path, pattern: str) -> tuple[int, bool]:
    """(how many hosts `pattern` matches, whether any is a lab host), as Ansible (and so
    testinfra) sees them. A child process: Ansible's config loader does not survive an
    in-process pytest run (pytester)."""
    exe = Path(sys.executable).parent / "ansible-inventory"
    proc = subprocess.run([str(exe), "-i", str(inventory), "--list", "--limit", pattern],
                          capture_output=True, text=True, env=ansible_env(),
                          stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
    try:
        groups = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return 0, False  # pytest itself will say what is wrong with the inventory
    hostvars = groups.pop("_meta", {}).get("hostvars", {})
    hosts = {h for group in groups.values() for h in group.get("hosts", [])}
    return len(hosts), any(hostvars.get(h, {}).get("ark_lab") for h in hosts)


def parallel_args(inventory: Path, limit: str | None, disruptive: bool = False,
                  keyword: str | None = None) -> list[str]:
    """pytest-xdist options: one worker per host, each host's checks kept together in one
    worker (conftest puts them in one xdist_group), so the hosts are checked at the same
    time. Only when no disruptive check runs: killing Redis or rebooting one host while
    another host is being checked would fail checks that depend on it (its Redis in a split
    topology, Prometheus on the monitoring host), so those runs stay serial, read-only
    checks first. `--keyword "not disruptive"` gives the parallel read-only run on the lab."""
    hosts, lab = fleet_of(inventory, limit or "ark")
    if hosts < 2:
        return []  # one host gains nothing from a worker; none: pytest says so itself
    read_only = bool(keyword) and "not disruptive" in keyword
    if (disruptive or lab) and not read_only:
        return []
    return ["-n", str(min(hosts, MAX_WORKERS)), "--dist", "loadgroup"]


def testinfra_become(inv: Path, limit: str | None
                     ) -> tuple[str, dict[str, str], list[str]]:
    """How testinfra should escalate, from the same derivation the other fleet commands use
    (ark_ops.fleet.hostaccess; a bad ansible_become* value stops here with its name).

    testinfra's ansible backend reads ansible_become / ansible_become_user itself but no
    become password, and it does not escalate a non-root user whose inventory leaves
    ansible_become unset (the deploy playbook does). So: with a become password, testinfra
    runs every command through Ansible (`force_ansible`: slower, but Ansible answers sudo);
    when every host escalates, ANSIBLE_BECOME* say so for all of them.
    Returns (the host spec's query string, extra environment, become passwords to mask)."""
    from ark_ops.errors import OpsError
    from ark_ops.fleet.hostaccess import InventoryVarError
    from ark_ops.fleet.ssh import inventory_hosts

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

    The suite's own plugin (ark_ops.verify.report) masks secrets in what it reports; its console
    output also passes through a mask of the inventory's secrets here, line by line, so
    nothing pytest prints outside a test report (an internal error) can carry one either.
    Disruptive checks (always run on the lab, elsewhere with `disruptive`) are audited
    (SEC_03) whoever calls this.
    """
    with maybe(disruptive or not inventory, audit_action, "verify.disruptive",
               {"keyword": keyword or ""}, inventory, limit) as rec:
        rc = _verify(inventory, limit, disruptive, keyword, reports_dir, log, echo,
                     rec.identity if rec else None)
        if rc != 0 and rec:
            rec.mark_failed(f"compliance checks failed (exit {rc})")
    return rc


def _verify(inventory: str | None, limit: str | None, disruptive: bool, keyword: str | None,
            reports_dir: Path, log, echo: Callable[[str], None] | None,
            identity: AuditIdentity | None) -> int:
    inv = resolve_inventory(inventory, log)
    query, become_env, passwords = testinfra_become(inv, limit)
    echo = echo or _write_stdout
    stamp = time.strftime("%Y%m%dT%H%M%S")
    reports_dir.mkdir(parents=True, exist_ok=True)
    junit = reports_dir / f"compliance-{stamp}.xml"
    markdown = reports_dir / f"compliance-{stamp}.md"
    cmd = [
        sys.executable, "-m", "pytest", str(REPO_ROOT / "tests" / "compliance"),
        "-p", "ark_ops.verify.report", "-p", "no:cacheprovider",
        f"--hosts=ansible://{limit or 'ark'}{query}", f"--ansible-inventory={inv}",
        f"--junitxml={junit}", f"--requirements-report={markdown}",
        "-o", "junit_family=xunit2", "-q",
    ]
    if disruptive:
        cmd.append("--disruptive")
    if keyword:
        cmd += ["-k", keyword]
    cmd += parallel_args(Path(inv), limit, disruptive, keyword)
    # testinfra only uses the ControlPath when this directory exists.
    ANSIBLE_CONTROL_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    redact = Redactor([*inventory_secrets(Path(inv)), *passwords])
    # testinfra's Ansible calls (force_ansible) are one ad-hoc task each: one_task.
    env = {**ansible_env(one_task=True, identity=identity), **become_env}
    # stdin=DEVNULL: testinfra's ansible-inventory refuses a non-blocking stdin, and one
    # inherited from a pipe (a gate inside `deploy --serial`, a CI runner) can be one.
    with subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace") as proc:
        for line in proc.stdout:
            echo(redact(line))
    rc = proc.returncode
    html = write_html(junit, reports_dir / f"compliance-{stamp}.html", inv, redact, log)
    for name, target in (("compliance-latest.md", markdown), ("compliance-latest.xml", junit),
                         ("compliance-latest.html", html)):
        link = reports_dir / name
        link.unlink(missing_ok=True)
        if target.exists():
            link.symlink_to(target.name)
    log(f"JUnit: {junit}\nMarkdown: {markdown}\nHTML: {html}")
    return rc


def write_html(junit: Path, out: Path, inventory: Path, redact: Redactor, log) -> Path:
    """The HTML report and its history entry; a run that wrote no JUnit (pytest could not
    start) has nothing to show, and that is said rather than raised."""
    if not junit.exists():
        log(f"no JUnit was written, so no HTML report ({junit})")
        return out
    return write_report(junit, out, inventory=inventory,
                        history_path=out.parent / HISTORY_NAME, repo=REPO_ROOT,
                        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), redact=redact)
