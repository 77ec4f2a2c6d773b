"""ARK Ops command surface. Thin: each task wires its arguments to `ark_ops`.

    invoke --list            what there is
    invoke --help deploy     what a task takes
"""

from __future__ import annotations

import functools
import sys

from invoke import Collection, Exit, task

from ark_ops.errors import OpsError


def operator_errors(fn):
    """Print OpsError as one clear sentence and exit with its code, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OpsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise Exit(code=exc.exit_code) from None

    return wrapper


# --- lab ---------------------------------------------------------------------------


@task(help={"hosts": "how many hosts the lab should have (default 1)"})
@operator_errors
def lab_up(c, hosts: int = 1):
    """Boot the local lab: N systemd-nspawn hosts, each in its own network namespace."""
    from ark_ops.lab import lab

    for s in lab.up(hosts=hosts):
        print(f"  {s.name:<12} {s.address:<15} {s.system_state}")


@task
@operator_errors
def lab_down(c):
    """Stop and remove every lab host: no process, mount, namespace or link is left."""
    from ark_ops.lab import lab

    lab.down()


@task
@operator_errors
def lab_status(c):
    """Show each lab host, its address and `systemctl is-system-running`."""
    from ark_ops.lab import lab

    rows = lab.status()
    if not rows:
        print("lab is down")
        return
    for s in rows:
        print(f"  {s.name:<12} {s.address:<15} {'up' if s.running else 'down':<5} {s.system_state}")


@task(help={"host": "lab host name (ark-lab-1) or index (1)"})
@operator_errors
def lab_ssh(c, host):
    """Open a shell on a lab host (root, with the lab's own key)."""
    import os

    from ark_ops.lab.config import LabHost, LabPaths
    from ark_ops.lab.ssh import ssh_argv

    try:
        target = LabHost.parse(host)
    except ValueError as exc:
        raise OpsError(str(exc)) from None
    argv = ssh_argv(LabPaths.default(), target, batch=False)
    os.execvp(argv[0], argv)


# --- deploy & verify ----------------------------------------------------------------


@task(
    help={
        "inventory": "inventory file or directory (default: the local lab, brought up if needed)",
        "limit": "only these hosts or groups (Ansible pattern)",
        "check": "dry run: show what would change, change nothing",
    }
)
@operator_errors
def deploy(c, inventory: str = "", limit: str = "", check: bool = False):
    """Deploy ARK: build the wheelhouse from requirements.lock, then run playbooks/site.yml."""
    from ark_ops.deploy import deploy as run_deploy

    run_deploy(inventory=inventory or None, limit=limit or None, check=check)


@task(
    help={
        "inventory": "inventory file or directory (default: the local lab)",
        "limit": "only these hosts or groups (default: the `ark` group)",
        "disruptive": "also run checks that kill, reboot or corrupt (always on for the lab)",
        "keyword": "only checks matching this pytest -k expression",
    }
)
@operator_errors
def verify(c, inventory: str = "", limit: str = "", disruptive: bool = False, keyword: str = ""):
    """Prove the requirements on the hosts (testinfra); table, JUnit and Markdown in reports/."""
    from ark_ops.verify import verify as run_verify

    rc = run_verify(inventory=inventory or None, limit=limit or None,
                    disruptive=disruptive, keyword=keyword or None)
    if rc != 0:
        raise Exit(code=rc)


# --- emergency ------------------------------------------------------------------------

FLEET_HELP = {
    "inventory": "inventory file or directory (default: the local lab)",
    "limit": "only these hosts or groups (Ansible pattern)",
}


def exit_if_any_failed(outcomes, what: str) -> None:
    """Every host was tried; the task fails when any host did (the table says which)."""
    failed = [o.host for o in outcomes if not o.ok]
    if failed:
        raise Exit(f"{what} FAILED on: {', '.join(failed)} (see above)", code=1)



@task(help=FLEET_HELP)
@operator_errors
def panic(c, inventory: str = "", limit: str = ""):
    """Stop every ARK process on every host NOW (SIGKILL, in parallel); nothing restarts
    it until `invoke recover`."""
    from ark_ops.panic import panic as run_panic

    outcomes, wall = run_panic(inventory=inventory or None, limit=limit or None)
    stopped = sum(o.ok for o in outcomes)
    print(f"panic: {stopped}/{len(outcomes)} host(s) stopped in {wall:.2f}s")
    exit_if_any_failed(outcomes, "panic")


@task(help=FLEET_HELP)
@operator_errors
def recover(c, inventory: str = "", limit: str = ""):
    """Clear a panic: run the cold-start checks (ark heal) and start ARK again."""
    from ark_ops.panic import recover as run_recover

    exit_if_any_failed(run_recover(inventory=inventory or None, limit=limit or None), "recover")


@task(help={**FLEET_HELP, "out": "directory for the bundles (default reports/dr/)"})
@operator_errors
def dr_bundle(c, inventory: str = "", limit: str = "", out: str = ""):
    """Build a DR bundle on every host in parallel (logs, snapshots, redacted config,
    units, audit logs, manifest) and fetch them to the control node."""
    from pathlib import Path

    from ark_ops.dr import dr_bundle as run_bundle

    outcomes = run_bundle(inventory=inventory or None, limit=limit or None,
                          out_dir=Path(out) if out else None)
    exit_if_any_failed(outcomes, "dr-bundle")


@task(
    help={
        "bundle": "a bundle made by dr-bundle",
        "host": "the one host to restore onto",
        "inventory": "inventory file or directory (default: the local lab)",
    }
)
@operator_errors
def dr_restore(c, bundle, host, inventory: str = ""):
    """Restore a DR bundle onto a host (deployed first): every member is verified before
    anything is written; ARK restarts through the cold-start checks."""
    from ark_ops.dr import dr_restore as run_restore

    if not run_restore(bundle, host, inventory=inventory or None).ok:
        raise Exit(code=1)


# --- development ----------------------------------------------------------------------


@task(help={"check": "only check that requirements.lock matches requirements.in"})
@operator_errors
def lock(c, check: bool = False):
    """Regenerate requirements.lock from requirements.in (pip-compile, with hashes)."""
    from pathlib import Path

    from ark_ops.lockfile import lock_drift

    if not check:
        c.run(f"{sys.executable} -m piptools compile --quiet --generate-hashes --allow-unsafe "
              "--strip-extras --no-emit-index-url --no-emit-find-links "
              "--output-file=requirements.lock requirements.in", pty=False)
    problems = lock_drift(Path("requirements.in"), Path("requirements.lock"))
    if problems:
        raise OpsError("requirements.lock does not match requirements.in: "
                       + "; ".join(problems) + ". Run `invoke lock`.")
    print("requirements.lock matches requirements.in")


@task(
    help={
        "fast": "skip the lab end-to-end tests (no root needed)",
        "pytest_args": "extra arguments for pytest, e.g. '-k store -x'",
    }
)
def test(c, fast: bool = False, pytest_args: str = ""):
    """Run the whole suite: lint, unit, integration (real Redis), lab end to end."""
    c.run(f"{sys.executable} -m ruff check .", pty=False)
    paths = "tests/unit tests/integration" + ("" if fast else " tests/e2e")
    c.run(f"{sys.executable} -m pytest {paths} {pytest_args}", pty=False)


# --- observability (LOG_02, AGENT_03) -------------------------------------------------


@task(
    help={
        **FLEET_HELP,
        "follow": "keep streaming new lines (Ctrl+C to stop; nothing is left running)",
        "agent": "only this agent's log (kyle, joey, kenny, hrm, heal)",
        "level": "at least this level: debug, info, warning, error, critical",
        "grep": "only lines matching this regular expression",
        "since": "only lines after this: 10m, 2h, 1d ago, or an ISO time",
        "json": "the raw JSON records, one per line, for machines",
    }
)
@operator_errors
def logs(c, inventory: str = "", limit: str = "", follow: bool = False, agent: str = "",
         level: str = "", grep: str = "", since: str = "", json: bool = False):
    """Every host's ARK logs merged in time order, prefixed with host and agent."""
    from ark_ops.logs import run as run_logs

    rc = run_logs(inventory or None, limit or None, follow_mode=follow, agent=agent,
                  level=level, grep=grep, since=since, raw_json=json)
    if rc:
        raise Exit(code=rc)


@task(help={**FLEET_HELP, "id": "a correlation id or any message id of the flow",
            "json": "one JSON object per hop"})
@operator_errors
def trace(c, id, inventory: str = "", limit: str = "", json: bool = False):  # noqa: A002
    """One message flow across every host: each hop with host, agent, event, time between."""
    from ark_ops.trace_fleet import run as run_trace

    rc = run_trace(id, inventory or None, limit or None, as_json=json)
    if rc:
        raise Exit(code=rc)


lab = Collection("lab")
lab.add_task(lab_up, "up")
lab.add_task(lab_down, "down")
lab.add_task(lab_status, "status")
lab.add_task(lab_ssh, "ssh")

ns = Collection(lab, deploy, verify, panic, recover, dr_bundle, dr_restore, lock, test,
                logs, trace)
