"""REC_01: the units that Restart= brings back check the panic flag on every start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.role_templates import environment

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "roles" / "ark_runtime" / "templates" / "systemd"
VALUES = dict(
    ansible_managed="test", group_names=["ark", "ark_api", "ark_agents"],
    ark_runtime_watchdog_sec=30, ark_runtime_restart_sec=2, ark_runtime_stop_timeout_sec=20,
    ark_runtime_user="ark", ark_runtime_api_user="ark-api", ark_runtime_group="ark",
    ark_runtime_env_dir="/etc/ark/env",
    ark_runtime_state_dir="/srv/ark-state", ark_runtime_log_dir="/var/log/ark",
    ark_runtime_venv_link="/opt/ark/venv", ark_runtime_api_memory_max_mb=512,
    ark_runtime_hrm_ruleset="/etc/ark/HRM_RULESET.yaml", ark_runtime_execution_mode="paper",
    __ark_runtime_env_schema={"units": {"api": ["infrastructure"]}},
    __ark_runtime_redis_acl_ready=True,
        __ark_runtime_redis_tls=False, ark_runtime_tls_dir="/etc/ark/tls",
    __ark_runtime_api_https=True, __ark_runtime_api_redirect_port=8100)


def render(template: str) -> list[str]:
    env = environment(UNITS, trim_blocks=True)
    return env.get_template(template).render(**VALUES).splitlines()


@pytest.mark.requirement("REC_01")
@pytest.mark.parametrize("template", ["ark-agent@.service.j2", "ark-api.service.j2"])
def test_a_restarted_unit_rechecks_the_panic_flag(template: str) -> None:
    """systemd >= 254 skips Condition*= on a Restart= restart (seen on Debian 13's 257: agents
    SIGKILLed by the panic were back 2 s later); ExecCondition= runs on every start."""
    lines = render(template)
    assert "Restart=on-failure" in lines
    assert "ConditionPathExists=!/srv/ark-state/PANIC" in lines  # boot, timers, plain starts
    assert "ExecCondition=+/usr/bin/test ! -e /srv/ark-state/PANIC" in lines
    # In [Service], where systemd reads it (in [Unit] it would be ignored with a warning).
    service = lines.index("[Service]")
    assert all(i > service for i, line in enumerate(lines) if line.startswith("ExecCondition="))


@pytest.mark.requirement("INFRA_02")
def test_only_the_agents_units_own_the_lock_directory() -> None:
    """systemd hands a unit's RuntimeDirectory= to that unit's user on each start: the API
    (its own user since issue 21) restarting with RuntimeDirectory=ark took /run/ark from the
    agents, and a second agent instance then locked under /var/lib/ark/locks and ran (caught
    on the lab by the compliance lock check)."""
    agent, api = render("ark-agent@.service.j2"), render("ark-api.service.j2")
    assert "RuntimeDirectory=ark" in agent and "User=ark" in agent
    assert not any(line.startswith("RuntimeDirectory") for line in api), api
    assert "User=ark-api" in api
