"""SEC_01: what roles/ark_runtime renders from the generated env schema passes
`ark env check` (the role's validate step), and each agent loads only its domains."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from ark_runtime.host.envcheck import check_env_file
from ark_runtime.settings import UNITS
from tests.support.role_templates import environment

pytestmark = pytest.mark.requirement("SEC_01")

REPO = Path(__file__).resolve().parents[2]
ROLE_TEMPLATES = REPO / "roles" / "ark_runtime" / "templates"
SCHEMA = yaml.safe_load((REPO / "ark_runtime/env.schema.yaml").read_text())
# What a production inventory gives the role's value map (roles/ark_runtime/vars/main.yml).
SAMPLE = {
    "ARK_ENVIRONMENT": "production", "ARK_API_HOST": "0.0.0.0", "ARK_API_PORT": 8101,
    "ARK_API_SECRET": "A" * 48, "ARK_METRICS_PORT": 9101, "ARK_REDIS_HOST": "127.0.0.1",
    "ARK_API_TRUSTED_PROXIES": "127.0.0.1", "ARK_API_REDIRECT_PORT": 8100,
    "ARK_REDIS_PORT": 6379, "ARK_REDIS_USERNAME": "admin", "ARK_REDIS_PASSWORD": "b" * 32,
    "ARK_REDIS_URL": "redis://10.213.0.2:6379/0", "ARK_STATE_DIR": "/var/lib/ark",
    "ARK_LOG_DIR": "/var/log/ark", "TRADING_PAPER_ONLY": "true", "ARK_JOEY_SHARDS": "2",
    "ARK_REDIS_TLS_DIR": "/etc/ark/tls",
    # issue #20: a pipeline whose Redis set has replicas
    "ARK_REDIS_SENTINELS": "10.213.0.11:26379,10.213.0.12:26379,10.213.0.13:26379",
    "ARK_REDIS_SENTINEL_MASTER": "ark-ark-lab-1", "ARK_BUS_WAIT_REPLICAS": "1",
    # operator extras (ark_runtime_env)
    "TELEGRAM_CHAT_ID": "@ark_alerts", "LLM_PROVIDER": "none", "ARK_FEATURE_BETA": "off",
}


def _env():
    # Ansible also searches a template's own directory for what it includes (systemd/_*.j2).
    return environment(ROLE_TEMPLATES, ROLE_TEMPLATES / "systemd", keep_trailing_newline=True)


def test_the_role_sets_only_values_the_sample_covers() -> None:
    role_vars = (REPO / "roles/ark_runtime/vars/main.yml").read_text()
    assert set(re.findall(r"'([A-Z][A-Z0-9_]+)':", role_vars)) <= set(SAMPLE)


@pytest.mark.parametrize("domain", list(SCHEMA["domains"]))
def test_rendered_domain_file_passes_env_check(domain: str, tmp_path: Path) -> None:
    text = _env().get_template("env/domain.env.j2").render(
        item=domain, ansible_managed="managed", __ark_runtime_env_schema=SCHEMA,
        __ark_runtime_env_values=SAMPLE)
    path = tmp_path / f"{domain}.env"
    path.write_text(text)
    os.chmod(path, 0o600)
    assert check_env_file(path, domains=[domain], environment="production") == []


@pytest.mark.parametrize("agent", ["kyle", "joey", "kenny", "hrm", "joey-1", "joey-12"])
def test_agent_drop_in_loads_its_domains(agent: str) -> None:
    text = _env().get_template("systemd/ark-agent-credentials.conf.j2").render(
        item=agent, ansible_managed="managed", __ark_runtime_env_schema=SCHEMA,
        ark_runtime_env_dir="/etc/ark/env", __ark_runtime_redis_acl_ready=True,
        __ark_runtime_redis_tls=False, ark_runtime_tls_dir="/etc/ark/tls")
    files = re.findall(r"^EnvironmentFile=/etc/ark/env/(\w+)\.env$", text, re.M)
    assert files == UNITS[agent.split("-")[0]]  # a Joey shard loads Joey's domains
    # ... and then its own Redis user (issue 19 §3), last so it wins over infrastructure.env.
    last = re.findall(r"^EnvironmentFile=(.*)$", text, re.M)[-1]
    assert last == f"/etc/ark/env/redis/{agent}.env"


def test_before_the_redis_host_has_users_an_agent_keeps_the_shared_password() -> None:
    # Mid-roll, this release ahead of the Redis host's: no per-unit user file is loaded.
    text = _env().get_template("systemd/ark-agent-credentials.conf.j2").render(
        item="hrm", ansible_managed="managed", __ark_runtime_env_schema=SCHEMA,
        ark_runtime_env_dir="/etc/ark/env", __ark_runtime_redis_acl_ready=False,
        __ark_runtime_redis_tls=False, ark_runtime_tls_dir="/etc/ark/tls")
    assert "/redis/" not in text


@pytest.mark.parametrize("template,extra", [
    ("systemd/ark-agent-credentials.conf.j2", {"item": "joey-1"}),
    ("systemd/ark-api.service.j2", {}),
])
def test_with_tls_on_each_redis_client_unit_gets_the_tls_files_as_credentials(template, extra):
    """Issue #19 §4: the key reaches the unit through systemd, never as a path its user reads;
    ark_runtime.config looks for exactly these credential names."""
    from ark_runtime.config import TLS_CREDENTIALS

    def render(tls: bool) -> str:
        return _env().get_template(template).render(
            ansible_managed="managed", __ark_runtime_env_schema=SCHEMA, group_names=["ark"],
            ark_runtime_env_dir="/etc/ark/env", __ark_runtime_redis_acl_ready=True,
            __ark_runtime_redis_tls=tls, ark_runtime_tls_dir="/etc/ark/tls",
            ark_runtime_user="ark", ark_runtime_api_user="ark-api", ark_runtime_group="ark",
            ark_runtime_metrics_user="m",
            ark_runtime_watchdog_sec=30, ark_runtime_restart_sec=2,
            ark_runtime_stop_timeout_sec=20, ark_runtime_state_dir="/var/lib/ark",
            ark_runtime_log_dir="/var/log/ark", ark_runtime_venv_link="/opt/ark/venv",
            ark_runtime_api_memory_max_mb=512, ark_runtime_hrm_ruleset="/etc/ark/r.yaml",
            __ark_runtime_api_https=False, __ark_runtime_api_redirect_port=0, **extra)

    creds = dict(re.findall(r"^LoadCredential=([\w-]+):(\S+)$", render(True), re.M))
    assert creds == {TLS_CREDENTIALS["ca"]: "/etc/ark/tls/ca.crt",
                     TLS_CREDENTIALS["cert"]: "/etc/ark/tls/host.crt",
                     TLS_CREDENTIALS["key"]: "/etc/ark/tls/host.key"}
    assert "redis-tls" not in render(False)


def _api_unit(https: bool, redirect: int) -> str:
    return _env().get_template("systemd/ark-api.service.j2").render(
        ansible_managed="managed", __ark_runtime_env_schema=SCHEMA, group_names=["ark"],
        ark_runtime_env_dir="/etc/ark/env", __ark_runtime_redis_acl_ready=True,
        __ark_runtime_redis_tls=False, ark_runtime_tls_dir="/etc/ark/tls",
        ark_runtime_user="ark", ark_runtime_api_user="ark-api", ark_runtime_group="ark",
        ark_runtime_venv_link="/opt/ark/venv",
        ark_runtime_watchdog_sec=30, ark_runtime_restart_sec=2, ark_runtime_stop_timeout_sec=20,
        ark_runtime_state_dir="/var/lib/ark", ark_runtime_log_dir="/var/log/ark",
        ark_runtime_api_memory_max_mb=512, __ark_runtime_api_https=https,
        __ark_runtime_api_redirect_port=redirect)


@pytest.mark.requirement("UI_01")
def test_the_https_console_gets_the_hosts_certificate_as_credentials_and_checks_both_ports():
    """Issue #21: the names ark_runtime.config looks for; the key never as a readable path."""
    from ark_runtime.config import API_TLS_CREDENTIALS

    text = _api_unit(True, 8100)
    creds = dict(re.findall(r"^LoadCredential=(api-[\w-]+):(\S+)$", text, re.M))
    assert creds == {API_TLS_CREDENTIALS["cert"]: "/etc/ark/tls/host.crt",
                     API_TLS_CREDENTIALS["key"]: "/etc/ark/tls/host.key"}
    pre = re.findall(r"^ExecStartPre=(.*)$", text, re.M)
    assert any(line.endswith("--ports api=${ARK_API_PORT},redirect=${ARK_API_REDIRECT_PORT}")
               for line in pre), pre
    assert re.search(r"^ExecStart=/opt/ark/venv/bin/ark api$", text, re.M)


def test_a_plain_http_console_has_no_certificate_and_no_redirect_port():
    text = _api_unit(False, 0)
    assert "api-tls" not in text and "redirect=" not in text
    assert re.search(r"^ExecStart=/opt/ark/venv/bin/ark api$", text, re.M)
