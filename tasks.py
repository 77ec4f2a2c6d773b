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


VAULT_HELP = {
    "vault_id": "a vault identity, LABEL@FILE or LABEL@prompt, as ansible-playbook takes it "
                "(repeatable)",
    "vault_password_file": "a file (or an executable client) holding the vault password "
                           "(repeatable; ANSIBLE_VAULT_PASSWORD_FILE works too)",
    "ask_vault_pass": "ask for the vault password on the terminal",
}


def fleet_task(*args, help=None, **kwargs):  # noqa: A002 - invoke's own keyword
    """@task for a command that reads an inventory: it also takes Ansible's vault options
    (ark_ops/fleet/vault.py), so vault-encrypted vars and a vaulted become password open as they
    do for ansible-playbook; errors print as one sentence (operator_errors)."""
    import inspect

    def wrap(fn):
        guarded = operator_errors(fn)

        @functools.wraps(fn)
        def with_vault(c, *a, vault_id=None, vault_password_file=None, ask_vault_pass=False,
                       **kw):
            from ark_ops.fleet import vault

            operator_errors(lambda: vault.use(vault.VaultOptions.of(
                vault_id, vault_password_file, ask_vault_pass)))()
            return guarded(c, *a, **kw)

        sig = inspect.signature(fn)
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                 for name, default in (("vault_id", None), ("vault_password_file", None),
                                       ("ask_vault_pass", False))]
        with_vault.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])
        iterable = [*kwargs.pop("iterable", []), "vault_id", "vault_password_file"]
        return task(help={**(help or {}), **VAULT_HELP}, iterable=iterable, **kwargs)(with_vault)

    return wrap(args[0]) if args and callable(args[0]) else wrap


# --- lab ---------------------------------------------------------------------------


@task(help={"hosts": "how many hosts the lab should have (default 1)",
            "topology": "all (every host runs everything, the default), split (host 1 "
                        "Redis + Prometheus, host 2 API + agents, further hosts agents) or "
                        "ha (split, plus replicas of host 1's Redis and a Sentinel on every "
                        "host; 3 hosts or more)",
            "user": "SSH user: root (default), or e.g. deploy: a non-root user with "
                    "passwordless sudo, root login disabled, inventory with become",
            "release": "Debian release of every host (bookworm or trixie), or one per host "
                       "in order: bookworm,trixie (default: running hosts keep theirs, new "
                       "hosts bookworm)"})
@operator_errors
def lab_up(c, hosts: int = 1, topology: str = "all", user: str = "root",
           release: str = ""):
    """Boot the local lab: N systemd-nspawn hosts, each in its own network namespace."""
    from ark_ops.lab import lab

    for s in lab.up(hosts=hosts, topology=topology, user=user, release=release):
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
    from ark_ops.lab.config import LabPaths
    from ark_ops.lab.ssh import lab_user

    print(f"  SSH as {lab.mode_text(lab_user(LabPaths.default()))}")
    for s in rows:
        print(f"  {s.name:<12} {s.address:<15} {'up' if s.running else 'down':<5} {s.system_state}")


@task(help={"host": "lab host name (ark-lab-1) or index (1)"})
@operator_errors
def lab_ssh(c, host):
    """Open a shell on a lab host (as the lab's SSH user, with the lab's own key)."""
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


@fleet_task(
    help={
        "inventory": "inventory file or directory (default: the local lab, brought up if needed)",
        "limit": "only these hosts or groups (Ansible pattern)",
        "check": "dry run: show what would change, change nothing",
        "serial": "roll out N hosts at a time after a one-host canary, each batch gated by "
                  "its compliance checks and fresh decisions; a failed batch is rolled back "
                  "and the roll stops (LAUNCH.md, Upgrade)",
        "gate-seconds": "with --serial: how long a batch's pipeline may go without a fresh "
                        "decision before its gate fails (default 60)",
        "canary": "with --serial: the host to upgrade first, alone (default: the first host "
                  "of the inventory)",
    }
)
def deploy(c, inventory: str = "", limit: str = "", check: bool = False, serial: int = 0,
           gate_seconds: int = 60, canary: str = ""):
    """Deploy ARK: build the wheelhouse from requirements.lock, then run playbooks/site.yml;
    with --serial N, roll it out: one canary host, then N hosts at a time, each batch gated."""
    if serial:
        from ark_ops.rollout.run import roll

        if check:
            raise OpsError("--check and --serial do not combine: a dry run has nothing to gate")
        report = roll(inventory=inventory or None, limit=limit or None, serial=serial,
                      gate_bound_s=gate_seconds, canary=canary or None)  # audited inside
        if not report.ok:
            raise Exit(f"deploy --serial stopped: {report.why}", code=1)
        return
    from ark_ops.deploy.run import deploy as run_deploy

    run_deploy(inventory=inventory or None, limit=limit or None, check=check)  # audited inside


@fleet_task(
    help={
        "inventory": "inventory file or directory (default: the local lab)",
        "limit": "only these hosts or groups (default: the `ark` group)",
        "disruptive": "also run checks that kill, reboot or corrupt (always on for the lab)",
        "keyword": "only checks matching this pytest -k expression",
    }
)
def verify(c, inventory: str = "", limit: str = "", disruptive: bool = False, keyword: str = ""):
    """Prove the requirements on the hosts (testinfra); table, JUnit, Markdown, HTML in reports/."""
    from ark_ops.verify.run import verify as run_verify

    # Disruptive checks run on the lab always, elsewhere with --disruptive: both are recorded
    # (by ark_ops.verify.run).
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



@fleet_task(help=FLEET_HELP)
def panic(c, inventory: str = "", limit: str = ""):
    """Stop every ARK process on every host NOW (SIGKILL, in parallel); nothing restarts
    it until `invoke recover`."""
    from ark_ops.fleet.panic import panic as run_panic

    outcomes, wall = run_panic(inventory=inventory or None, limit=limit or None)  # audited
    stopped = sum(o.ok for o in outcomes)
    print(f"panic: {stopped}/{len(outcomes)} host(s) stopped in {wall:.2f}s")
    exit_if_any_failed(outcomes, "panic")


@fleet_task(help=FLEET_HELP)
def recover(c, inventory: str = "", limit: str = ""):
    """Clear a panic: run the cold-start checks (ark heal) and start ARK again."""
    from ark_ops.fleet.panic import recover as run_recover

    outcomes = run_recover(inventory=inventory or None, limit=limit or None)  # audited
    exit_if_any_failed(outcomes, "recover")


@fleet_task(help={**FLEET_HELP, "out": "directory for the bundles (default reports/dr/)"})
def dr_bundle(c, inventory: str = "", limit: str = "", out: str = ""):
    """Build a DR bundle on every host in parallel (logs, snapshots, redacted config,
    units, audit logs, manifest) and fetch them to the control node."""
    from pathlib import Path

    from ark_ops.fleet.dr import dr_bundle as run_bundle

    outcomes = run_bundle(inventory=inventory or None, limit=limit or None,  # audited
                          out_dir=Path(out) if out else None)
    exit_if_any_failed(outcomes, "dr-bundle")


@fleet_task(
    help={
        "bundle": "a bundle made by dr-bundle",
        "host": "the one host to restore onto",
        "inventory": "inventory file or directory (default: the local lab)",
    }
)
def dr_restore(c, bundle, host, inventory: str = ""):
    """Restore a DR bundle onto a host (deployed first): every member is verified before
    anything is written; ARK restarts through the cold-start checks."""
    from ark_ops.fleet.dr import dr_restore as run_restore

    outcome = run_restore(bundle, host, inventory=inventory or None)  # audited
    if not outcome.ok:
        raise Exit(code=1)


# --- off-host backups (REC_03) ----------------------------------------------------------


@fleet_task(help={**FLEET_HELP})
def offsite_backup(c, inventory: str = "", limit: str = ""):
    """DR bundles of every host, signed, into the inventory's off-host restic repository;
    then forget (keep-daily/keep-weekly) and restic check. The timer runs this."""
    from ark_ops.fleet.offsite_flow import backup_fleet

    outcomes, _ = backup_fleet(inventory=inventory or None, limit=limit or None)  # audited
    exit_if_any_failed(outcomes, "offsite.backup")


@fleet_task(help={"host": "the one host to restore onto (deployed first)",
            "source": "whose bundle to restore (default: the host itself)",
            "inventory": "inventory file or directory (default: the local lab)"})
def offsite_restore(c, host, source: str = "", inventory: str = ""):
    """Restore a host's newest off-host bundle: fetched from restic, verified against the
    key pinned in the inventory (no .secrets/ signing key needed), then dr-restore."""
    from ark_ops.fleet.offsite_flow import restore_from_offsite

    outcome = restore_from_offsite(host, source=source or None,  # audited
                                   inventory=inventory or None)
    if not outcome.ok:
        raise Exit(code=1)


@task(help={"inventory": "inventory file or directory the timer backs up",
            "on_calendar": "systemd OnCalendar= of the timer (default daily)",
            "randomized_delay": "RandomizedDelaySec= of the timer (default 15min)",
            "dest": "where the units go (default /etc/systemd/system)"})
@operator_errors
def offsite_timer(c, inventory, on_calendar: str = "daily", randomized_delay: str = "15min",
                  dest: str = "/etc/systemd/system"):
    """Install the control node's systemd timer that runs offsite.backup for an inventory
    (units checked with systemd-analyze verify first) and, when systemd runs this machine and
    the units go to /etc/systemd/system, enable and start it."""
    from pathlib import Path

    from ark_ops.fleet.offsite_timer import SYSTEM_UNITS, activate, install, systemd_runs_here

    written = install(Path(inventory), on_calendar=on_calendar, dest=Path(dest),
                      randomized_delay=randomized_delay)
    for path in written:
        print(f"  wrote {path}")
    timer = next(p.name for p in written if p.suffix == ".timer")
    if Path(dest) == SYSTEM_UNITS and systemd_runs_here():
        activate(timer)
        print(f"  enabled and started {timer} (see `systemctl list-timers {timer}`)")
    else:
        print(f"  to start it: sudo systemctl daemon-reload && "
              f"sudo systemctl enable --now {timer}")


# --- alerts (LOG_03) ----------------------------------------------------------------------


@fleet_task(help={"alert": "alert name to silence, e.g. ArkAgentPaused",
            "match": "extra label matcher, e.g. host=ark-prod-2 (repeatable)",
            "duration": "how long, e.g. 30m, 2h, 1d (default 1h)",
            "comment": "why (required; shown to whoever is paged next)",
            "inventory": "inventory file or directory (default: the local lab)"},
      iterable=["match"])
def alerts_silence(c, comment, alert="", match=None, duration="1h", inventory=""):
    """Silence alerts on every Alertmanager of the ark_monitoring group (amtool); audited."""
    from ark_ops.fleet.alerts import Silence, silence
    from ark_ops.fleet.audit import actor

    spec = Silence.build(alert, list(match or []), duration, comment, actor())
    outcomes = silence(spec, inventory=inventory or None)  # audited
    exit_if_any_failed(outcomes, "alerts.silence")


@fleet_task(help={"inventory": "inventory file or directory (default: the local lab)"})
def alerts_list(c, inventory=""):
    """The alerts each Alertmanager holds now, silenced and inhibited ones included."""
    from ark_ops.fleet.alerts import firing

    exit_if_any_failed(firing(inventory=inventory or None), "alerts.list")


@fleet_task(help={**FLEET_HELP, "limit": "the host(s) to take out (required)",
                  "out": "directory for their DR bundles (default reports/dr/)"})
def decommission(c, limit: str = "", inventory: str = "", out: str = ""):
    """Take hosts out for good: a DR bundle of each first (fetched here), then ARK's units,
    files and users removed from them; audited."""
    from pathlib import Path

    from ark_ops.fleet.decommission import decommission as run_decommission

    _bundles, removed = run_decommission(inventory or None, limit or None,
                                         Path(out) if out else None)
    exit_if_any_failed(removed, "decommission")


# --- secrets (issue 22 §3) -----------------------------------------------------------------


@fleet_task(help={"kind": "session-secret, operators, snapshot-key, dr-signing-key "
                          "(redis: not yet, issue 19 §3)",
                  "inventory": "inventory file or directory (default: the local lab)",
                  "limit": "only these hosts (Ansible pattern; operators and snapshot-key only)"})
def secrets_rotate(c, kind, inventory: str = "", limit: str = ""):
    """Rotate one secret without stopping the pipeline; audited, values never printed
    (LAUNCH.md, Rotating secrets)."""
    from ark_ops.fleet.rotate import rotate

    outcomes = rotate(kind, inventory=inventory or None, limit=limit or None)  # audited
    exit_if_any_failed(outcomes, f"secrets.rotate {kind}")


# --- audit (SEC_03, GOV_01) -------------------------------------------------------------


@fleet_task(help={**FLEET_HELP, "limit": "only these hosts (Ansible pattern)",
            "last": "only the newest N records", "since": "10m, 2h, 7d or an ISO time",
            "action": "this action or its prefix (deploy, snapshot)",
            "who": "records whose actor contains this", "json": "one JSON record per line"})
def audit_show(c, inventory: str = "", limit: str = "", last: int = 0, since: str = "",
               action: str = "", who: str = "", json: bool = False):
    """Every host's audit records and the control node's, merged in time order."""
    import argparse

    from ark_ops.fleet.audit_view import show
    from ark_runtime.host.audit.cli import parse_since

    try:
        when = parse_since(since) if since else None
    except argparse.ArgumentTypeError as exc:
        raise OpsError(str(exc)) from None
    rc = show(inventory or None, limit or None, last=last or None, since=when,
              action=action or None, who=who or None, as_json=json)
    if rc:
        raise Exit(code=rc)


@fleet_task(help=FLEET_HELP)
def audit_verify(c, inventory: str = "", limit: str = ""):
    """Check every host's audit chain across rotations, against the head this control node
    kept after the last action (a cut tail or a rewritten file shows), and its own chain."""
    from ark_ops.fleet.audit_view import verify as run_verify

    if run_verify(inventory or None, limit or None):
        raise Exit("audit chain verification FAILED (see above)", code=1)


# --- config versions (GOV_02) ---------------------------------------------------------------


def version_number(text: str, name: str) -> int:
    if not str(text).isdigit() or int(text) < 1:
        raise OpsError(f"{name} must be a config version number (1, 2, ...), not {text!r}")
    return int(text)


@fleet_task(help={**FLEET_HELP, "last": "only each host's newest N versions",
            "json": "one JSON object per version"})
def config_history(c, inventory: str = "", limit: str = "", last: int = 0, json: bool = False):
    """Each host's recorded config versions (who, when, commit, why)."""
    from ark_ops.fleet.config_history import history

    exit_if_any_failed(history(inventory or None, limit or None, last or None, json),
                       "config.history")


@fleet_task(help={"a": "a version number", "b": "another version number",
            "host": "only this host (versions are numbered per host)",
            "inventory": FLEET_HELP["inventory"]})
def config_diff(c, a, b, host: str = "", inventory: str = ""):
    """Unified diff between two config versions of a host (secrets masked; env files by
    sha256 only)."""
    from ark_ops.fleet.config_history import diff

    exit_if_any_failed(diff(version_number(a, "A"), version_number(b, "B"), inventory or None,
                            host or None), "config.diff")


@fleet_task(help={**FLEET_HELP, "to": "the version to put back (see config.history)"})
def config_rollback(c, to, inventory: str = "", limit: str = ""):
    """Put config version N back on the hosts (files, venv), reload systemd and restart
    what changed through the cold-start checks; recorded as a new version and audited."""
    from ark_ops.fleet.config_history import rollback

    outcomes = rollback(version_number(to, "--to"), inventory or None, limit or None)
    exit_if_any_failed(outcomes, "config.rollback")


# --- development ----------------------------------------------------------------------


@task(help={"check": "only check that requirements.lock matches requirements.in"})
@operator_errors
def lock(c, check: bool = False):
    """Regenerate requirements.lock from requirements.in (pip-compile, with hashes)."""
    from pathlib import Path

    from ark_ops.deploy.lockfile import lock_drift

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
    """Run the whole suite: lint (ruff, the import contracts, yamllint, ansible-lint production
    profile), unit, integration (real Redis), lab end to end."""
    import os
    from pathlib import Path

    venv_bin = str(Path(sys.executable).parent.resolve())
    # ansible-lint runs offline (.ansible-lint) and calls ansible-* from the venv.
    lint_env = {"PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
    c.run(f"{sys.executable} -m ruff check .", pty=False)
    # pyproject.toml [tool.importlinter]: the wings' layering, no import loop.
    c.run(f"{venv_bin}/lint-imports --no-cache", pty=False)
    c.run(f"{sys.executable} -m yamllint --strict .", pty=False)
    c.run(f"{venv_bin}/ansible-lint", pty=False, env=lint_env)
    # Unit tests share no state (measured: same results, 139 s -> 92 s on 2 cores with
    # pytest-xdist); integration and lab tests share Redis ports and the one lab: serial.
    c.run(f"{sys.executable} -m pytest tests/unit -n auto {pytest_args}", pty=False)
    paths = "tests/integration" + ("" if fast else " tests/e2e")
    # The slowest tests named at the end: where the suite's time goes, run after run.
    c.run(f"{sys.executable} -m pytest {paths} --durations=20 {pytest_args}", pty=False)


@task(
    help={
        "rps": "requests per second to offer (locust: default 500; wrk: default unpaced, as "
               "fast as the API answers)",
        "duration": "how long, e.g. 60s or 2m (default 60s)",
        "host": "API to drive: lab host address or URL (default 127.0.0.1)",
        "api_pid": "PID of the API process to sample (found automatically when possible)",
        "machine": "lab host name whose `ark api` process to sample (e.g. ark-lab-1)",
        "processes": "locust worker processes (default: one per CPU above 250 RPS)",
        "generator": "locust (health, status, log tail, login) or wrk (the signed-in console "
                     "read mix of ark_ops/load/mix.py, built from the API's OpenAPI document)",
        "connections": "wrk: open connections (default 50)",
        "threads": "wrk: threads (default 1; its report shows how busy they were)",
        "chatter": "wrk: WebSocket chatter listeners held open during the run (0-8, default 0)",
    }
)
@operator_errors
def load(c, rps: int = -1, duration: str = "60s", host: str = "127.0.0.1",
         api_pid: int = 0, machine: str = "", processes: int = 0, generator: str = "locust",
         connections: int = 50, threads: int = 1, chatter: int = 0):
    """TEST_03: drive the API with locust or wrk; report under reports/load/. Sign-in for the
    mix: ARK_LOAD_USER / ARK_LOAD_PASSWORD in the environment (ARK_LOAD_CA: the fleet's CA
    for HTTPS). With --generator wrk, --rps paces the mix (unpaced when not given)."""
    from pathlib import Path

    from ark_ops.errors import OpsError
    from ark_ops.load.run import run_load, run_load_wrk

    if generator == "wrk":
        out = run_load_wrk(host, duration, Path("reports/load"), connections=connections,
                           threads=threads, rate=max(rps, 0), chatter=chatter,
                           api_pid=api_pid or None, machine=machine or None)
    elif generator == "locust":
        out = run_load(host, 500 if rps < 0 else rps, duration, Path("reports/load"),
                       api_pid=api_pid or None,
                       machine=machine or None, processes=processes or None)
    else:
        raise OpsError(f"--generator: {generator!r} is neither locust nor wrk")
    print((out / "report.md").read_text())


# --- observability (LOG_02, AGENT_03) -------------------------------------------------


@fleet_task(
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
def logs(c, inventory: str = "", limit: str = "", follow: bool = False, agent: str = "",
         level: str = "", grep: str = "", since: str = "", json: bool = False):
    """Every host's ARK logs merged in time order, prefixed with host and agent."""
    from ark_ops.fleet.logs import run as run_logs

    rc = run_logs(inventory or None, limit or None, follow_mode=follow, agent=agent,
                  level=level, grep=grep, since=since, raw_json=json)
    if rc:
        raise Exit(code=rc)


@fleet_task(help={**FLEET_HELP, "id": "a correlation id or any message id of the flow",
            "json": "one JSON object per hop"})
def trace(c, id, inventory: str = "", limit: str = "", json: bool = False):  # noqa: A002
    """One message flow across every host: each hop with host, agent, event, time between."""
    from ark_ops.fleet.trace import run as run_trace

    rc = run_trace(id, inventory or None, limit or None, as_json=json)
    if rc:
        raise Exit(code=rc)


@task(help=FLEET_HELP)
@operator_errors
def risk(c, inventory: str = "", limit: str = ""):
    """HRM's risk state (breakers, P&L, streak, exposure) as each ark_agents host reads it
    from Redis; exit 1 when a breaker is tripped."""
    from ark_ops.fleet.risk import run as run_risk

    rc = run_risk(inventory or None, limit or None)
    if rc:
        raise Exit(code=rc)


@fleet_task(help={"inventory": FLEET_HELP["inventory"],
                  "host": "the ark_redis host (default: the first)"})
def redis_cli(c, inventory: str = "", host: str = ""):
    """redis-cli on the Redis host as the admin user: invoke redis.cli -- ARGS (SEC_01). The
    password stays on the host (REDISCLI_AUTH from its root-only env file)."""
    from ark_ops.fleet import redis_cli as rcli

    args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    rc = rcli.run(inventory or None, host or None, args)
    if rc:
        raise Exit(code=rc)


@fleet_task(help={"inventory": FLEET_HELP["inventory"]})
def redis_status(c, inventory: str = ""):
    """Each ark_redis host's Redis: primary or replica, replicas with state and lag, and the
    ARK hosts using it; exit 1 when one does not answer (issue #20)."""
    from ark_ops.fleet import redis_status as status

    rc = status.run(inventory or None)
    if rc:
        raise Exit(code=rc)


@fleet_task(help={"inventory": FLEET_HELP["inventory"],
                  "pipeline": "the Redis set to fail over, named by its primary's inventory host "
                              "(default: the only set with replicas)",
                  "timeout": "seconds to wait for the Sentinels to name the new primary "
                             "(default 60)"})
def redis_failover(c, inventory: str = "", pipeline: str = "", timeout: int = 60):
    """The Sentinels promote a replica of the set now (a planned switch-over, issue #20):
    prints old -> new primary; audited; exit 1 when no new primary is named in time."""
    from ark_ops.fleet import redis_failover as failover

    rc = failover.run(inventory or None, pipeline or None, timeout=timeout)
    if rc:
        raise Exit(code=rc)


# --- compose (DEPLOY_02: the single-host Docker Compose stack) ---------------------------


@task
@operator_errors
def compose_env(c):
    """Write compose/ark.env from the env schema (ark_runtime/env.schema.yaml)."""
    from ark_ops.compose import files as compose

    print(f"wrote {compose.write_env_file()}")


@task
@operator_errors
def compose_check(c):
    """Check docker-compose.yml (Compose Specification schema, ARK's list, docker-compose
    config) and compose/ark.env (the env schema)."""
    from ark_ops.compose import files as compose

    compose.check_compose_file()
    compose.check_env_file()
    compose.docker_compose_config()
    print("docker-compose.yml and compose/ark.env are valid")


@task
@operator_errors
def compose_up(c):
    """Build the image (base from the lab image, wheels from the wheelhouse), make the secrets
    once, bring the stack up and wait for every healthcheck. Starts dockerd if none runs."""
    from ark_ops.compose import engine as compose_engine
    from ark_ops.compose import files as compose

    with compose_engine.Engine(keep=True):
        compose_engine.build_image()
        compose.ensure_secrets()
        compose_engine.compose("up", "-d")
        compose_engine.wait_healthy(compose.ARK_SERVICES)
    print("ARK stack is up and healthy (docker-compose -p ark ps)")


@task(help={"volumes": "also remove the state, log and Redis volumes"})
@operator_errors
def compose_down(c, volumes: bool = False):
    """Stop the stack; stop the dockerd compose.up started, if it did."""
    from ark_ops.compose import engine as compose_engine

    compose_engine.compose("down", *(["-v"] if volumes else []))
    for fixed in compose_engine.stop_kept_engine():
        print(f"restored {fixed}")
    print("ARK stack is down")


# --- documentation (DOC_02) ------------------------------------------------------------


@task
@operator_errors
def docs(c):
    """Render docs/architecture.yaml to docs/architecture.svg (Graphviz dot); commit both."""
    from ark_ops.architecture import render

    print(f"wrote {render()}")


@task
@operator_errors
def role_vars(c):
    """Write docs/ROLE_VARIABLES.md: every role variable with its type, default and
    description, from roles/*/meta/argument_specs.yml and defaults/main.yml."""
    from ark_ops.role_vars import write

    print(f"wrote {write()}")


lab = Collection("lab")
lab.add_task(lab_up, "up")
lab.add_task(lab_down, "down")
lab.add_task(lab_status, "status")
lab.add_task(lab_ssh, "ssh")

audit = Collection("audit")
audit.add_task(audit_show, "show")
audit.add_task(audit_verify, "verify")

config = Collection("config")
config.add_task(config_history, "history")
config.add_task(config_diff, "diff")
config.add_task(config_rollback, "rollback")

offsite = Collection("offsite")
offsite.add_task(offsite_backup, "backup")
offsite.add_task(offsite_restore, "restore")
offsite.add_task(offsite_timer, "timer")

redis_ns = Collection("redis")
redis_ns.add_task(redis_cli, "cli")
redis_ns.add_task(redis_status, "status")
redis_ns.add_task(redis_failover, "failover")
secrets_ns = Collection("secrets")
secrets_ns.add_task(secrets_rotate, "rotate")

alerts = Collection("alerts")
alerts.add_task(alerts_silence, "silence")
alerts.add_task(alerts_list, "list")

compose_ns = Collection("compose")
compose_ns.add_task(compose_env, "env")
compose_ns.add_task(compose_check, "check")
compose_ns.add_task(compose_up, "up")
compose_ns.add_task(compose_down, "down")

ns = Collection(lab, audit, config, compose_ns, offsite, alerts, redis_ns, secrets_ns, deploy,
                verify, panic,
                recover, dr_bundle, dr_restore, decommission, lock, test, load, logs, trace, risk,
                docs, role_vars)
