"""LOG_03: ark-metrics.service as the role renders it: the host's address, hardened."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import jinja2
import pytest

from tests.support.tools import needs_tool

REPO = Path(__file__).resolve().parents[2]
ROLE_TEMPLATES = REPO / "roles" / "ark_runtime" / "templates"


def render(groups: list[str], bind: str = "10.213.0.2", tls: bool = False) -> str:
    # Ansible renders templates with trim_blocks on.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE_TEMPLATES / "systemd"),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    return env.get_template("ark-metrics.service.j2").render(
        ansible_managed="test", group_names=["ark", *groups], ark_runtime_watchdog_sec=30,
        ark_runtime_restart_sec=2, ark_runtime_stop_timeout_sec=20, ark_runtime_group="ark",
        ark_runtime_env_dir="/etc/ark/env", ark_runtime_hrm_ruleset="/etc/ark/HRM_RULESET.yaml",
        ark_runtime_venv_link="/opt/ark/venv", ark_runtime_metrics_bind=bind,
        ark_runtime_metrics_user="ark-metrics",
        __ark_runtime_metrics_units=["ark-api.service", "ark-agent@kyle.service"],
        __ark_runtime_redis_acl_ready=True,
        __ark_runtime_redis_tls=tls, ark_runtime_tls_dir="/etc/ark/tls")


def exec_start(unit: str) -> list[str]:
    text = re.search(r"^ExecStart=(.*?)(?<!\\)\n", unit, re.S | re.M).group(1)
    return text.replace("\\\n", " ").split()


@pytest.mark.requirement("LOG_03")
def test_listens_on_the_hosts_address_and_reports_the_bus_only_on_the_redis_host() -> None:
    redis_host = exec_start(render(["ark_redis", "ark_agents"]))
    assert redis_host[redis_host.index("--listen") + 1] == "10.213.0.2:${ARK_METRICS_PORT}"
    assert "--bus" in redis_host
    assert redis_host.count("--unit") == 2
    assert "--bus" not in exec_start(render(["ark_agents"]))


@pytest.mark.requirement("LOG_03")
def test_runs_as_its_own_user_that_panic_does_not_hold_back() -> None:
    unit = render(["ark_agents"])
    assert "User=ark-metrics" in unit and "Group=ark" in unit
    assert "DynamicUser=yes" not in unit  # dbus-daemon refuses unresolvable uids
    assert "ConditionPathExists" not in unit  # it must report the panic, so it runs in one
    assert "Restart=on-failure" in unit
    assert "/etc/ark/env/infrastructure.env" in unit and "trading.env" not in unit


@pytest.mark.requirement("LOG_03")
def test_ark_target_wants_the_exporter() -> None:
    assert "Wants=ark-metrics.service" in (ROLE_TEMPLATES / "systemd/ark.target.j2").read_text()


@needs_tool("systemd-analyze", "systemd")
@pytest.mark.requirement("LOG_03")
def test_exposure_score_is_at_most_1_5(tmp_path: Path) -> None:
    (tmp_path / "ark-metrics.service").write_text(render(["ark_redis"]))
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true",
                           "ark-metrics.service"], cwd=tmp_path, capture_output=True, text=True)
    match = re.search(r"Overall exposure level for ark-metrics.service: ([\d.]+)", proc.stdout)
    if match is None:
        pytest.skip(f"systemd-analyze cannot score offline here: {proc.stderr.strip()[:200]}")
    assert float(match.group(1)) <= 1.5, proc.stdout


def test_with_tls_on_the_exporter_gets_the_tls_files_as_credentials():
    """Issue #19 §4: its bus collector reaches a remote Redis over TLS; the key via systemd."""
    from ark_runtime.config import TLS_CREDENTIALS

    creds = dict(re.findall(r"^LoadCredential=([\w-]+):(\S+)$", render(["ark_agents"], tls=True),
                            re.M))
    assert set(creds) == set(TLS_CREDENTIALS.values())
    assert creds[TLS_CREDENTIALS["key"]] == "/etc/ark/tls/host.key"
    assert "LoadCredential=redis-tls" not in render(["ark_agents"])
