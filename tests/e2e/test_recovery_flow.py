"""Recovery end to end on a multi-host lab: panic (REC_01), DR bundle round trip
(REC_03) and the deploy's port preflight (INFRA_03).

Needs root and the lab tools; skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from ark_ops.deploy import run as deploy_mod
from ark_ops.deploy.playbook import PlaybookFailed
from ark_ops.fleet.dr import dr_bundle, dr_restore
from ark_ops.fleet.panic import panic, recover
from ark_ops.lab import lab
from ark_ops.lab.config import LabHost
from tests.support.lab_shell import deployed_lab, on, units_active, wait_for

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


def pipeline_settled(host: str) -> str:
    """The sample feed is finite: once the decision count stops moving, it is done."""
    first = sqlite(host, "select count(*) from decisions")
    time.sleep(2)
    return first if first == sqlite(host, "select count(*) from decisions") != "0\n" else ""


@pytest.fixture(scope="module")
def fleet():
    with deployed_lab(2) as hosts:
        assert hosts == [A, B]
        yield hosts


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
        wait_for(lambda h=host: units_active(h), 60, f"{host} healthy after recover")
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
    wait_for(lambda: units_active(A), 60, "A healthy after recover")


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
    wait_for(lambda: units_active(A), 60, "A healthy after recover")


@pytest.mark.requirement("REC_03")
def test_dr_bundle_restores_onto_a_fresh_host_with_the_same_state(fleet, tmp_path):
    wait_for(lambda: pipeline_settled(A), 120, "A's pipeline to finish the sample feed")
    outcomes = dr_bundle(limit=A, out_dir=tmp_path, log=lambda *_: None)
    assert outcomes[0].ok, outcomes[0].error
    bundle = outcomes[0].value
    assert bundle.host_seconds > 0  # the 10 s target is measured by benchmarks/dr_bundle_lab.py
    decisions, ledger = sqlite(A, DECISIONS), sqlite(A, LEDGER)
    assert decisions and ledger
    # A newly created host, deployed, then restored from A's bundle.
    lab.up(hosts=3, user="deploy")
    fresh = "ark-lab-3"
    deploy_mod.deploy(limit=fresh, echo=False)
    assert sqlite(fresh, DECISIONS) != decisions  # its own run, its own timestamps
    assert dr_restore(str(bundle.local), fresh, log=lambda *_: None).ok
    wait_for(lambda: units_active(fresh), 60, "the restored host to serve")
    assert sqlite(fresh, DECISIONS) == decisions
    assert sqlite(fresh, LEDGER) == ledger


@pytest.mark.requirement("INFRA_03")
def test_deploy_stops_before_changing_anything_when_a_port_is_taken(fleet):
    on(B, "systemctl", "stop", "ark.target", "ark-api.service", check=True)
    on(B, "systemd-run", "--unit=squatter", "-p", "User=nobody", "python3", "-m",
       "http.server", "8101", check=True)
    before = on(B, "sh", "-c", "'find /etc/ark /etc/systemd/system /opt/ark -newer "
                "/etc/hostname -printf \"%p %T@\\n\" | sort'").stdout
    try:
        wait_for(lambda: on(B, "ss", "-ltnH", "sport = :8101").stdout.strip(), 15,
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
    wait_for(lambda: units_active(B), 60, "B healthy after the port is free")
