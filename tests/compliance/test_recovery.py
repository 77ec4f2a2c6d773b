"""State and recovery on the host: snapshots (MEM_03), cold start and self-healing boot
(MEM_02, REC_02), port preflight (INFRA_03)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import http_get_json, wait_for

ARK = "/opt/ark/venv/bin/ark"
STORE = "/var/lib/ark/memory.db"
RULESET = "/etc/ark/HRM_RULESET.yaml"
# ark commands as the units run them: their user, environment and credential (the snapshot
# manifest key is root-only; systemd hands it to the unit, as LoadCredential= does there).
AS_ARK = ("systemd-run --quiet --pipe --wait --collect -p User=ark -p Group=ark "
          "-p EnvironmentFile=/etc/ark/env/infrastructure.env "
          "-p LoadCredential=snapshot-key:/etc/ark/snapshot.key "
          f"--setenv=ARK_HRM_RULESET={RULESET} {ARK} ")
AS_ROOT = f"set -a; . /etc/ark/env/infrastructure.env; set +a; {ARK} "


def sql(host, query: str, db: str = STORE) -> str:
    return host.check_output("sqlite3 %s %s", db, query)


def stop_ark(host) -> None:
    # Patterns match only the units loaded here: a host without the API (split topology)
    # has no ark-api.service, and naming it would fail the stop (exit 5) half done.
    host.run_test("systemctl stop ark.target 'ark-api*.service' 'ark-agent@*.service'")


def start_ark(host) -> None:
    # A restart of ark-heal re-runs the cold-start checks, as a boot would.
    host.run("systemctl restart ark-heal.service")
    host.run("systemctl start ark.target")


def all_agents_active(host, instances) -> bool:
    """Every agent this host runs (its share of the pipeline) is active."""
    return all(host.service(f"ark-agent@{a}.service").is_running for a in instances)


def wait_for_agents(host, instances, what: str) -> None:
    """Every agent of the host running again; a generous bound (a busy CI machine), and on
    timeout the units' states and recent journal, so the failure says why."""
    try:
        wait_for(lambda: all_agents_active(host, instances), timeout=180, what=what)
    except AssertionError as exc:
        units = host.run("systemctl list-units --all --no-pager --plain 'ark*'").stdout
        journal = host.run("journalctl -n 40 --no-pager -u ark-heal.service "
                           "-u 'ark-agent@*.service'").stdout
        raise AssertionError(f"{exc}\n{units}\n{journal[-3000:]}") from None


def newest_snapshot(host) -> dict:
    snaps = json.loads(host.check_output(AS_ARK + "snapshot list --json"))
    assert snaps, "no snapshot on the host"
    return {**snaps[0], "path": f"/var/lib/ark/snapshots/{snaps[0]['id']}"}


# --- MEM_03 -------------------------------------------------------------------------


@pytest.mark.requirement("MEM_03")
def test_snapshot_timer_runs_at_the_inventory_interval(host, hostvars):
    timer = host.service("ark-snapshot.timer")
    assert timer.is_enabled and timer.is_running
    interval = hostvars.get("ark_runtime_snapshot_interval", "15min")
    monotonic = host.check_output("systemctl show ark-snapshot.timer -p TimersMonotonic")
    expected = host.check_output("systemd-analyze timespan %s", interval)
    usec = [line for line in expected.splitlines() if "μs:" in line or "us:" in line]
    assert "OnUnitActiveUSec=" in monotonic
    assert usec and usec[0].split(":")[1].strip() in monotonic.replace(" ", "") or \
        interval.replace(" ", "") in monotonic.replace(" ", "")


@pytest.mark.requirement("MEM_03")
@pytest.mark.runs_agent("hrm")
def test_store_owner_snapshots_on_graceful_shutdown(host):
    props = host.service("ark-agent@hrm.service").systemd_properties
    assert "snapshot create --on-shutdown" in props["ExecStopPost"]


@pytest.mark.requirement("MEM_03")
def test_existing_snapshots_verify(host):
    result = host.run(AS_ARK + "snapshot verify")
    assert result.rc == 0, result.stdout + result.stderr


@pytest.mark.requirement("MEM_03")
@pytest.mark.disruptive
@pytest.mark.runs_agent("hrm")  # the store's owner: a host without HRM has none to snapshot
def test_snapshot_on_request_is_consistent_and_verify_catches_a_changed_byte(host):
    host.run_test(AS_ARK + "snapshot create --reason manual")
    snap = newest_snapshot(host)
    host.run_test(AS_ARK + "snapshot verify %s", snap["id"])
    # Tamper with a copy (ARK_STATE_DIR points the CLI at it): one flipped byte, then
    # one missing byte, must each be detected.
    work = "/var/tmp/ark-verify-probe"
    host.run_test(f"rm -rf {work} && mkdir -p {work}/snapshots && "
                  f"cp -a {snap['path']} {work}/snapshots/")
    copy = f"{work}/snapshots/{snap['id']}/memory.db"
    try:
        verify = f"ARK_STATE_DIR={work} {ARK} snapshot verify {snap['id']}"
        assert host.run(verify).rc == 0
        host.run_test(f"printf '\\377' | dd of={copy} bs=1 seek=100 conv=notrunc status=none")
        flipped = host.run(verify)
        assert flipped.rc != 0 and "memory.db" in flipped.stdout + flipped.stderr
        host.run_test(f"cp -a {snap['path']}/memory.db {copy} && truncate -s -1 {copy}")
        assert host.run(verify).rc != 0
    finally:
        host.run(f"rm -rf {work}")


# --- MEM_02 / REC_02 ----------------------------------------------------------------


@pytest.mark.requirement("MEM_02")
@pytest.mark.requirement("REC_02")
def test_heal_runs_before_every_ark_service(host, groups, agent_instances):
    heal = host.service("ark-heal.service")
    assert heal.is_enabled
    assert host.check_output("systemctl show ark-heal.service -p Result --value") == "success"
    units = (["ark-api.service"] if "ark_api" in groups else []) + (
        [f"ark-agent@{a}.service" for a in agent_instances])
    for unit in units:
        props = host.service(unit).systemd_properties
        assert "ark-heal.service" in props["Requires"], unit
        assert "ark-heal.service" in props["After"], unit


@pytest.mark.requirement("MEM_02")
@pytest.mark.requirement("REC_02")
@pytest.mark.disruptive
@pytest.mark.runs_agent("hrm")  # the store's owner
def test_corrupt_store_comes_back_from_the_last_snapshot(host, api_url, groups,
                                                         agent_instances):
    stop_ark(host)
    # A clean stop of the store's owner leaves a shutdown snapshot: the newest one.
    snap = newest_snapshot(host)
    assert snap["reason"] == "shutdown"
    decisions = sql(host, "select count(*) from decisions", f"{snap['path']}/memory.db")
    # Garbage over the middle of the file: pages the integrity check reads.
    host.run_test(f"dd if=/dev/urandom of={STORE} bs=4096 seek=1 count=8 conv=notrunc "
                  "status=none && rm -f {STORE}-wal {STORE}-shm".format(STORE=STORE))
    start_ark(host)
    wait_for_agents(host, agent_instances, "agents after repair")
    assert sql(host, "pragma integrity_check") == "ok"
    assert sql(host, "select count(*) from decisions") == decisions
    log = host.check_output("journalctl -u ark-heal.service -n 50 --no-pager")
    repaired = [line for line in log.splitlines() if re.search(r"REPAIRED\s+store\s", line)]
    assert repaired and snap["id"] in repaired[-1], log
    # The loss is reported and bounded by the snapshot's age.
    assert re.search(r"changes made in the \d+ s before it was taken and after are lost",
                     repaired[-1]), repaired[-1]
    if "ark_api" in groups:
        status, _ = http_get_json(host, f"{api_url}/health")
        assert status == 200


@pytest.mark.requirement("REC_02")
@pytest.mark.disruptive
@pytest.mark.runs_on("ark_agents")
def test_deleted_directory_is_recreated_with_owner_and_mode(host, agent_instances):
    stop_ark(host)
    host.run_test("rm -rf /var/log/ark")
    start_ark(host)
    wait_for_agents(host, agent_instances, "agents after repair")
    d = host.file("/var/log/ark")
    assert d.is_directory and (d.user, d.group, d.mode) == ("ark", "ark", 0o750)
    # the audit trail's directory comes back root-only (SEC_03), so a re-deploy changes nothing
    a = host.file("/var/log/ark/audit")
    assert a.is_directory and (a.user, a.group, a.mode) == ("root", "root", 0o700)


@pytest.mark.requirement("REC_02")
@pytest.mark.disruptive
@pytest.mark.runs_on("ark_agents")
def test_broken_config_falls_back_to_last_known_good(host, agent_instances):
    good = host.file(RULESET).content_string
    stop_ark(host)
    host.run_test(f"printf 'rules: [{{id: X, operator: nope}}]\\n' > {RULESET}")
    start_ark(host)
    wait_for_agents(host, agent_instances, "agents after LKG fallback")
    assert host.file(RULESET).content_string == good


@pytest.mark.requirement("REC_02")
@pytest.mark.disruptive
@pytest.mark.runs_on("ark_agents")
def test_broken_config_without_fallback_keeps_agents_down_and_says_why(host, agent_instances):
    good = host.file(RULESET).content_string
    stop_ark(host)
    host.run_test("mv /var/lib/ark/lkg /var/lib/ark/lkg.aside")
    host.run_test(f"printf 'rules: [{{id: X, operator: nope}}]\\n' > {RULESET}")
    try:
        start_ark(host)
        assert host.check_output("systemctl show ark-heal.service -p Result --value") != "success"
        assert not any(host.service(f"ark-agent@{a}.service").is_running for a in agent_instances)
        why = host.check_output("journalctl -u ark-heal.service -n 30 --no-pager")
        assert "HRM_RULESET" in why, why
    finally:
        host.run(f"cat > {RULESET} <<'EOF'\n{good}EOF")
        host.run("rm -rf /var/lib/ark/lkg && mv /var/lib/ark/lkg.aside /var/lib/ark/lkg")
        start_ark(host)
    wait_for_agents(host, agent_instances, "agents after the fix")


# --- INFRA_03 -----------------------------------------------------------------------


@pytest.mark.requirement("INFRA_03")
def test_ports_check_passes_while_ark_holds_its_ports(host):
    result = host.run(AS_ROOT + "ports check")
    assert result.rc == 0, result.stdout + result.stderr
    assert "held by ARK" in result.stdout


@pytest.mark.requirement("INFRA_03")
@pytest.mark.disruptive
def test_ports_check_names_a_foreign_holder_and_the_fix(host):
    host.run_test("systemd-run --unit=port-squatter -p User=nobody "
                  "python3 -m http.server --bind 127.0.0.1 9101")
    try:
        wait_for(lambda: host.socket("tcp://127.0.0.1:9101").is_listening, timeout=15,
                 what="the squatter to listen")
        result = host.run(AS_ROOT + "ports check")
        assert result.rc == 69, result.stdout + result.stderr
        out = result.stdout + result.stderr
        assert "9101" in out and "python3" in out and "nobody" in out
        assert "ARK_METRICS_PORT" in out or "stop" in out
    finally:
        host.run("systemctl stop port-squatter")
