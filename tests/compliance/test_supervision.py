"""INFRA_01: systemd supervises ARK: enabled, active, restarts, survives reboot."""

from __future__ import annotations

import re

import pytest
from conftest import http_get_json, reachable_and, units_of, wait_for

pytestmark = pytest.mark.requirement("INFRA_01")

UNIT_FILES = {
    "/etc/systemd/system/ark.target": "ark",
    "/etc/systemd/system/ark-api.service": "ark_api",
    "/etc/systemd/system/ark-agent@.service": "ark_agents",
}


@pytest.mark.parametrize("unit", [
    "ark.target", pytest.param("ark-api.service", marks=pytest.mark.runs_on("ark_api"))])
def test_unit_enabled_and_active(host, unit):
    svc = host.service(unit)
    assert svc.is_enabled, f"{unit} does not start at boot"
    assert svc.is_running, f"{unit} is not active"


@pytest.mark.runs_on("ark_api")
def test_api_supervision_properties(host):
    props = host.service("ark-api.service").systemd_properties
    assert props["Type"] == "notify"
    assert props["NotifyAccess"] == "main"
    assert props["Restart"] == "on-failure"
    assert props["KillSignal"] == "15"  # SIGTERM
    assert props["WatchdogUSec"] not in ("0", "infinity", "")
    assert props["TimeoutStopUSec"] not in ("infinity", "")
    assert props["User"] == "ark-api"  # its own user, not the agents' (issue 21)
    assert "ark.target" in props["WantedBy"]


def test_target_starts_at_boot(host, groups):
    props = host.service("ark.target").systemd_properties
    assert "multi-user.target" in props["WantedBy"]
    # The target pulls in the API only where the host is in ark_api.
    assert ("ark-api.service" in props["Wants"]) == ("ark_api" in groups), props["Wants"]


@pytest.mark.runs_on("ark_agents")
def test_agent_template_is_installed(host):
    props = host.service("ark-agent@probe.service").systemd_properties
    assert props["Type"] == "notify"
    assert props["Restart"] == "on-failure"
    assert "ark agent probe" in props["ExecStart"]


def test_systemd_analyze_verify_is_clean(host, groups):
    files = [path for path, group in UNIT_FILES.items() if group in groups]
    result = host.run("SYSTEMD_LOG_COLOR=0 systemd-analyze verify %s", " ".join(files))
    assert result.rc == 0, result.stderr
    assert (result.stdout + result.stderr).strip() == "", result.stdout + result.stderr


@pytest.mark.runs_on("ark_api")
def test_api_is_sandboxed(host):
    out = host.check_output("systemd-analyze security ark-api.service --no-pager")
    exposure = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", out).group(1))
    # Debian's own units score 9.6; systemd's best-hardened ones 2.6-2.8.
    assert exposure <= 3.0, out.splitlines()[-1]


def _main_pid(host) -> int:
    return int(host.service("ark-api.service").systemd_properties["MainPID"])


@pytest.mark.disruptive
@pytest.mark.runs_on("ark_api")
def test_sigkill_of_api_is_restarted_by_systemd(host, api_url):
    before = _main_pid(host)
    assert before > 0
    host.run_test("kill -KILL %s", str(before))
    after = wait_for(
        lambda: (pid := _main_pid(host)) not in (0, before)
        and host.service("ark-api.service").is_running and pid,
        timeout=30, what="systemd to restart ark-api",
    )
    assert after != before
    status, body = wait_for(
        lambda: (r := http_get_json(host, f"{api_url}/health"))[0] == 200
        and r, timeout=30, what="/health after restart",
    )
    assert body["status"] == "ok"


@pytest.mark.disruptive
@pytest.mark.reboot
def test_everything_is_active_after_reboot(host, api_url, groups, agent_instances):
    # /run is a tmpfs: the marker disappears only if the host really rebooted.
    host.run_test("touch /run/ark-compliance-before-reboot")
    host.run("systemd-run --on-active=1 --timer-property=AccuracySec=100ms systemctl reboot")
    wait_for(lambda: reachable_and(host, "test ! -e /run/ark-compliance-before-reboot"),
             timeout=120, interval=2, what="the host to reboot")
    wait_for(lambda: reachable_and(host, "systemctl is-system-running --wait | "
                                         "grep -qxE 'running|degraded'"),
             timeout=120, interval=2, what="boot to finish")
    for unit in units_of(groups, agent_instances):
        assert host.service(unit).is_running, f"{unit} is not active after reboot"
    if "ark_api" not in groups:
        return
    status, body = wait_for(
        lambda: (r := http_get_json(host, f"{api_url}/health"))[0] == 200
        and r, timeout=30, what="/health after reboot",
    )
    assert body["redis"]["ok"] is True
