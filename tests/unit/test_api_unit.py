"""ark-api.service as the role renders it (trim_blocks on, as Ansible does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.role_templates import environment

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "roles" / "ark_runtime" / "templates" / "systemd"


def render(**overrides) -> str:
    env = environment(UNITS, trim_blocks=True)
    values = dict(
        ansible_managed="test", group_names=["ark", "ark_api"], ark_runtime_watchdog_sec=30,
        ark_runtime_restart_sec=2, ark_runtime_stop_timeout_sec=20, ark_runtime_user="ark",
        ark_runtime_api_user="ark-api", ark_runtime_group="ark", ark_runtime_env_dir="/etc/ark/env",
        ark_runtime_state_dir="/var/lib/ark", ark_runtime_log_dir="/var/log/ark",
        ark_runtime_venv_link="/opt/ark/venv", ark_runtime_api_memory_max_mb=512,
        __ark_runtime_env_schema={"units": {"api": ["infrastructure"]}},
        __ark_runtime_redis_acl_ready=True,
        __ark_runtime_redis_tls=False, ark_runtime_tls_dir="/etc/ark/tls",
        __ark_runtime_api_https=True, __ark_runtime_api_redirect_port=8100)
    values.update(overrides)
    return env.get_template("ark-api.service.j2").render(**values)


@pytest.mark.requirement("SEC_02")
def test_the_api_has_a_memory_ceiling() -> None:
    """Vulnerability 4 (issue 21): a flood must hit the API's own limit, not the host's."""
    lines = render(ark_runtime_api_memory_max_mb=400).splitlines()
    assert "MemoryMax=400M" in lines
    assert "MemoryHigh=300M" in lines
