"""Recovery end to end on a mixed multi-host lab — host A on Debian 12 (bookworm), host B on
Debian 13 (trixie): deploy and verify (DEPLOY_01), panic (REC_01), an alert that reaches a
webhook and resolves (LOG_03), off-host DR bundles restored from a checkout without the
signing key, the control node's daily timer run by a real systemd, and the DR bundle round
trip (REC_03), and the deploy's port preflight (INFRA_03).

Needs root and the lab tools; skipped otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from ark_ops.deploy import run as deploy_mod
from ark_ops.deploy.playbook import PlaybookFailed
from ark_ops.fleet.dr import dr_bundle, dr_restore
from ark_ops.fleet.offsite import TAG, initialised, inventory_repository, restic
from ark_ops.fleet.offsite_flow import backup_fleet, restore_from_offsite
from ark_ops.fleet.offsite_timer import unit_name
from ark_ops.fleet.panic import panic, recover
from ark_ops.lab.config import LabHost, LabPaths
from ark_ops.verify.run import verify
from tests.support.control_node import control_node
from tests.support.lab_shell import deployed_lab, lab_up, on, units_active, wait_for
from tests.support.webhook import webhook_receiver

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

A, B = "ark-lab-1", "ark-lab-2"
DECISIONS = "select correlation_id, approved, decided_at from decisions order by 1"
LEDGER = "select * from ledger order by 1"


def ark_processes(host: str) -> list[str]:
    return on(host, "pgrep", "-a", "-u", "ark").stdout.splitlines()


def sqlite(host: str, query: str) -> str:
    return on(host, "sqlite3", "/var/lib/ark/memory.db", f"'{query}'", check=True).stdout


# The host's Redis, read on the host with its own settings (the env file's admin user, the
# password from the env file into the environment: never on a command line) and ARK's venv:
# every key of type stream, its XLEN and XINFO GROUPS.
BUS_SCRIPT = """set -a; . /etc/ark/env/infrastructure.env; set +a
exec /opt/ark/venv/bin/python - <<'PY'
import json
from ark_runtime.bus.streams import connect
r = connect()
print(json.dumps({k: [r.xlen(k), {g["name"]: g["last-delivered-id"] for g in r.xinfo_groups(k)}]
                  for k in sorted(r.scan_iter(count=1000, _type="stream"))}))
PY
"""


def bus_state(host: str) -> dict[str, tuple[int, dict[str, str]]]:
    """Each stream's XLEN and its consumer groups' last-delivered ids. The consumers and
    their pending entries are checked by the restore itself before the agents start (its
    output line); once they run, a fresh host's agents join the groups."""
    out = on(host, "sh", "-s", stdin=BUS_SCRIPT, check=True).stdout
    return {k: (n, groups) for k, (n, groups) in json.loads(out.splitlines()[-1]).items()}


def bus_settled(host: str) -> dict[str, tuple[int, dict[str, str]]] | None:
    first = bus_state(host)
    time.sleep(2)
    return first if first and first == bus_state(host) else None


def pipeline_settled(host: str) -> str:
    """The sample feed is finite: once the decision count stops moving, it is done."""
    first = sqlite(host, "select count(*) from decisions")
    time.sleep(2)
    return first if first == sqlite(host, "select count(*) from decisions") != "0\n" else ""


@pytest.fixture(scope="module")
def fleet():
    """A on bookworm, B on trixie; Alertmanager (on A) routes to a webhook receiver on the
    lab bridge's address, which exists once the lab is up."""
    group_vars = LabPaths.default().inventory / "group_vars"
    alerting = group_vars / "ark_monitoring.yml"
    with contextlib.ExitStack() as stack:

        def route_alerts_to_a_receiver() -> None:
            RECEIVER["rcv"] = rcv = stack.enter_context(webhook_receiver())
            # Written, never deleted (Ansible caches inventory vars in-process): emptied after.
            group_vars.mkdir(parents=True, exist_ok=True)
            alerting.write_text(
                "ark_alerting_receivers:\n"
                f"  - {{name: e2e-webhook, webhook_url: '{rcv.url}'}}\n"
                "ark_alerting_group_wait: 5s\nark_alerting_group_interval: 10s\n")

        try:
            with deployed_lab(2, release="bookworm,trixie",
                              before_deploy=route_alerts_to_a_receiver) as hosts:
                assert hosts == [A, B]
                yield hosts
        finally:
            if alerting.exists():
                alerting.write_text("{}\n")


RECEIVER: dict = {}


@pytest.fixture(scope="module")
def receiver(fleet):
    return RECEIVER["rcv"]


@pytest.mark.requirement("DEPLOY_01")
def test_the_mixed_fleet_runs_debian_12_and_13_and_verifies(fleet, tmp_path):
    assert on(A, "cat", "/etc/debian_version").stdout.startswith("12.")
    assert on(B, "cat", "/etc/debian_version").stdout.startswith("13.")
    assert "Python 3.13" in on(B, "/opt/ark/venv/bin/python", "--version").stdout
    # The read-only checks on both releases; the disruptive ones run in the modules below
    # (and on bookworm in test_lab_deploy): the CI budget has no room for them twice.
    rc = verify(keyword="not disruptive", reports_dir=tmp_path)
    report = (tmp_path / "compliance-latest.md").read_text()
    assert rc == 0, report


@pytest.mark.requirement("REC_01")
def test_panic_kills_everything_and_nothing_restarts_until_recover(fleet):
    outcomes, wall = panic(log=lambda *_: None)
    assert all(o.ok for o in outcomes), outcomes
    assert {o.host for o in outcomes} == set(fleet)
    assert all(o.value.remaining == 0 and o.value.killed for o in outcomes)
    print(f"panic wall time, {len(fleet)} hosts: {wall:.2f}s")
    time.sleep(5)  # longer than RestartSec: a Restart= would have fired by now
    for host in fleet:
        assert ark_processes(host) == [], host
    # Not even a reboot brings it back.
    on(A, "touch", "/run/ark-e2e-before-reboot", check=True)  # /run empties on reboot
    on(A, "systemd-run", "--on-active=1", "systemctl", "reboot")
    wait_for(lambda: on(A, "test", "-e", "/run/ark-e2e-before-reboot").returncode == 1,
             120, "the host to reboot")
    wait_for(lambda: on(A, "systemctl", "is-system-running", "--wait").stdout.strip()
             in ("running", "degraded"), 120, "the host to boot again")
    assert ark_processes(A) == []
    # Recover runs the cold-start checks, then ARK serves again with a consistent store.
    assert all(o.ok for o in recover(log=lambda *_: None))
    for host in fleet:
        wait_for(lambda h=host: units_active(h), 180, f"{host} healthy after recover")
        assert sqlite(host, "pragma integrity_check").strip() == "ok"
        assert on(host, "test", "-e", "/var/lib/ark/PANIC").returncode == 1


@pytest.mark.requirement("REC_01")
def test_panic_with_redis_down_and_a_host_unreachable(fleet):
    on(A, "systemctl", "stop", "redis-server", check=True)
    veth = LabHost.parse(B).veth
    subprocess.run(["ip", "link", "set", veth, "down"], check=True)
    try:
        outcomes, _ = panic(log=lambda *_: None)
    finally:
        subprocess.run(["ip", "link", "set", veth, "up"], check=True)
    by_host = {o.host: o for o in outcomes}
    assert by_host[A].ok and by_host[A].value.remaining == 0
    assert not by_host[B].ok and by_host[B].error  # reported, not fatal to the others
    assert ark_processes(A) == []
    on(A, "systemctl", "start", "redis-server", check=True)
    assert all(o.ok for o in recover(log=lambda *_: None))
    wait_for(lambda: units_active(A), 180, "A healthy after recover")


@pytest.mark.requirement("REC_01")
def test_panic_wins_over_a_running_deploy(fleet):
    errors: list[BaseException] = []

    def run_deploy():
        try:
            deploy_mod.deploy(limit=A, echo=False)
        except BaseException as exc:  # the deploy is expected to fail on a panicked host
            errors.append(exc)

    # Drift the deploy will repair, so its handlers restart the agents mid-run.
    on(A, "sh", "-c", "'echo \\# drift >> /etc/ark/env/features.env'", check=True)
    worker = threading.Thread(target=run_deploy)
    worker.start()
    time.sleep(6)  # inside the playbook by now
    outcomes, _ = panic(limit=A, log=lambda *_: None)
    worker.join(timeout=600)
    assert outcomes[0].ok
    time.sleep(3)
    assert ark_processes(A) == [], "the deploy restarted ARK after the panic"
    assert all(o.ok for o in recover(limit=A, log=lambda *_: None))
    wait_for(lambda: units_active(A), 180, "A healthy after recover")


@pytest.mark.requirement("LOG_03")
def test_a_stopped_agent_alert_reaches_the_webhook_and_resolves(fleet, receiver):
    unit = "ark-agent@kyle.service"
    on(B, "systemctl", "stop", unit, check=True)
    try:
        # for: 30s after a 15 s scrape, 15 s evaluation, 5 s group_wait: bounded generously.
        firing = wait_for(lambda: receiver.alerts("firing", "ArkAgentDown", host=B, unit=unit),
                          300, f"ArkAgentDown for {B} at the webhook", interval=2)
    finally:
        on(B, "systemctl", "start", unit, check=True)
    assert firing[0]["annotations"]["runbook"] == "docs/OPS_HANDBOOK.md#agent-down"
    wait_for(lambda: receiver.alerts("resolved", "ArkAgentDown", host=B, unit=unit), 300,
             f"the resolve of ArkAgentDown for {B} at the webhook", interval=2)


@pytest.mark.requirement("REC_03")
def test_an_off_host_bundle_restores_from_a_checkout_without_the_signing_key(fleet, tmp_path):
    wait_for(lambda: pipeline_settled(A), 120, "A's pipeline to finish the sample feed")
    decisions = sqlite(A, DECISIONS)
    outcomes, result = backup_fleet(limit=A, log=lambda *_: None)
    assert outcomes[0].ok, outcomes[0].error
    assert "no errors were found" in result.check
    # The repository is on B (ark_backup_target), owned by the sftp-only account.
    assert on(B, "test", "-f", "/srv/ark-restic/repo/config").returncode == 0
    # A second control node: the inventory and the restic password (plus the repository's
    # sftp key), no DR signing key.
    first = LabPaths.default().inventory
    second = tmp_path / "second-checkout" / "inventory" / "lab"
    shutil.copytree(first, second, ignore=shutil.ignore_patterns(".secrets", "*.tmp"))
    (second / ".secrets").mkdir(mode=0o700)
    for name in ("restic_password", "offsite_ed25519"):
        shutil.copy(first / ".secrets" / name, second / ".secrets" / name)
    assert not list((second / ".secrets").glob("dr_signing*"))
    on(A, "sqlite3", "/var/lib/ark/memory.db", "'delete from decisions'", check=True)
    assert sqlite(A, DECISIONS) != decisions
    outcome = restore_from_offsite(A, inventory=str(second / "hosts.yml"), log=lambda *_: None)
    assert outcome.ok, outcome.error
    wait_for(lambda: units_active(A), 180, "A to serve after the off-host restore")
    assert sqlite(A, DECISIONS) == decisions


def snapshots() -> dict[str, dict]:
    repo = inventory_repository(LabPaths.default().inventory)
    if not repo.password_file.exists() or not initialised(repo):
        return {}  # the timer's run makes both
    return {s["id"]: s for s in json.loads(restic(repo, "snapshots", "--json", "--tag", TAG))}


def backup_records(host: str) -> list[dict]:
    out = on(host, "/opt/ark/venv/bin/ark", "audit", "show", "--json", "--action",
             "offsite.backup", check=True).stdout
    return [json.loads(x) for x in out.splitlines() if x.strip()]


@pytest.mark.requirement("REC_03")
def test_the_control_nodes_timer_backs_the_fleet_up_under_systemd(fleet, tmp_path):
    """issue #22 §5: `offsite.timer` on a control node run by systemd installs, verifies and
    starts the timer; at its calendar time the timer (not a person) runs offsite.backup as
    the service, and a new snapshot with every host's bundle lands off-host."""
    inventory = LabPaths.default().inventory
    before = snapshots()
    name = unit_name(inventory)
    with control_node(tmp_path / "control") as node:
        # One firing, a minute from now: the run is over before the node shuts down, so no
        # restic lock is left in the repository.
        at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() + 60))
        out = node.run(".venv/bin/invoke", "offsite.timer", "--inventory", str(inventory),
                       "--on-calendar", at, "--randomized-delay", "0").stdout
        assert f"enabled and started {name}.timer" in out, out
        timer = node.show(f"{name}.timer", "UnitFileState", "NextElapseUSecRealtime")
        assert timer["UnitFileState"] == "enabled"
        assert timer["NextElapseUSecRealtime"] not in ("", "0", "n/a"), \
            f"{at} had passed before the timer started: {timer}"

        def ran() -> dict[str, str] | None:
            svc = node.show(f"{name}.service", "ActiveState", "Result", "ExecMainStatus",
                            "ExecMainExitTimestampMonotonic")
            done = svc["ExecMainExitTimestampMonotonic"] not in ("", "0") \
                and svc["ActiveState"] in ("inactive", "failed")
            return svc if done else None

        svc = wait_for(ran, 900, f"{name}.service to run once from its timer", interval=3)
        journal = node.run("journalctl", "--no-pager", "-o", "cat", "-u",
                           f"{name}.service").stdout
        assert (svc["Result"], svc["ExecMainStatus"]) == ("success", "0"), journal[-3000:]
        fired = node.show(f"{name}.timer", "LastTriggerUSec")["LastTriggerUSec"]
        assert fired not in ("", "0", "n/a"), "the service ran, but not from its timer"
        node.run("systemctl", "disable", "--now", f"{name}.timer")
    new = [s for sid, s in snapshots().items() if sid not in before]
    assert len(new) == 1, new
    files = restic(inventory_repository(inventory), "ls", new[0]["id"]).splitlines()
    for host in (A, B):  # a signed bundle of every host
        assert any(f"/{host}/" in f and f.endswith(".tar.gz") for f in files), files
        assert any(f"/{host}/" in f and f.endswith(".tar.gz.sig") for f in files), files
    # Audited on the hosts as the timer's run, not a person's.
    assert any(r["who"] == "timer:root" for r in backup_records(A)), backup_records(A)


@pytest.mark.requirement("REC_03")
def test_dr_bundle_restores_onto_a_fresh_host_with_the_same_state(fleet, tmp_path):
    wait_for(lambda: pipeline_settled(A), 120, "A's pipeline to finish the sample feed")
    bus = wait_for(lambda: bus_settled(A), 120, "A's bus to stop moving")  # issue #19 §5
    assert any(k.endswith("stream:hrm") and groups for k, (_, groups) in bus.items()), bus
    outcomes = dr_bundle(limit=A, out_dir=tmp_path, log=lambda *_: None)
    assert outcomes[0].ok, outcomes[0].error
    bundle = outcomes[0].value
    assert bundle.host_seconds > 0  # the 10 s target is measured by benchmarks/dr_bundle_lab.py
    # A's bus as the bundle left it: the reference for the restored host.
    before, bus = bus, bus_state(A)
    assert set(before) <= set(bus), (before, bus)
    decisions, ledger = sqlite(A, DECISIONS), sqlite(A, LEDGER)
    assert decisions and ledger
    # A newly created host, deployed, then restored from A's bundle.
    lab_up(3)
    fresh = "ark-lab-3"
    deploy_mod.deploy(limit=fresh, echo=False)
    assert sqlite(fresh, DECISIONS) != decisions  # its own run, its own timestamps
    assert bus_state(fresh) != bus
    restored = dr_restore(str(bundle.local), fresh, log=lambda *_: None)
    assert restored.ok, restored.error
    # Checked by the host against the manifest (lengths, groups, consumers, pending) before
    # the agents started, and again here from outside once they serve.
    assert f"Redis restored from the bundle's dump ({len(bus)} streams" in restored.value, \
        (restored.value, sorted(before), sorted(bus))
    wait_for(lambda: units_active(fresh), 180, "the restored host to serve")
    assert sqlite(fresh, DECISIONS) == decisions
    assert sqlite(fresh, LEDGER) == ledger
    assert bus_state(fresh) == bus, (before, bus)


@pytest.mark.requirement("INFRA_03")
def test_deploy_stops_before_changing_anything_when_a_port_is_taken(fleet):
    on(B, "systemctl", "stop", "ark.target", "ark-api.service", check=True)
    on(B, "systemd-run", "--unit=squatter", "-p", "User=nobody", "python3", "-m",
       "http.server", "8101", check=True)
    before = on(B, "sh", "-c", "'find /etc/ark /etc/systemd/system /opt/ark -newer "
                "/etc/hostname -printf \"%p %T@\\n\" | sort'").stdout
    try:
        wait_for(lambda: on(B, "ss", "-ltnH", "sport = :8101").stdout.strip(), 60,
                 "the squatter to listen")
        with pytest.raises(PlaybookFailed) as failed:
            deploy_mod.deploy(limit=B, echo=False)
        out = failed.value.result.output
        assert "port 8101 (api) is held by python3" in out
        assert "nobody" in out and "systemctl stop squatter.service" in out
        assert failed.value.result.recap[B]["changed"] == 0
        after = on(B, "sh", "-c", "'find /etc/ark /etc/systemd/system /opt/ark -newer "
                   "/etc/hostname -printf \"%p %T@\\n\" | sort'").stdout
        assert after == before  # nothing on the host was touched
    finally:
        on(B, "systemctl", "stop", "squatter.service")
    deploy_mod.deploy(limit=B, echo=False)
    wait_for(lambda: units_active(B), 180, "B healthy after the port is free")
