"""SEC_01: what roles/ark_runtime renders from the generated env schema passes
`ark env check` (the role's validate step), and each agent loads only its domains."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jinja2
import pytest
import yaml

from ark_runtime.host.envcheck import check_env_file
from ark_runtime.settings import UNITS

pytestmark = pytest.mark.requirement("SEC_01")

REPO = Path(__file__).resolve().parents[2]
ROLE_TEMPLATES = REPO / "roles" / "ark_runtime" / "templates"
SCHEMA = yaml.safe_load((REPO / "ark_runtime/env.schema.yaml").read_text())
# What a production inventory gives the role's value map (roles/ark_runtime/vars/main.yml).
SAMPLE = {
    "ARK_ENVIRONMENT": "production", "ARK_API_HOST": "0.0.0.0", "ARK_API_PORT": 8101,
    "ARK_API_SECRET": "A" * 48, "ARK_METRICS_PORT": 9101, "ARK_REDIS_HOST": "127.0.0.1",
    "ARK_API_TRUSTED_PROXIES": "127.0.0.1",
    "ARK_REDIS_PORT": 6379, "ARK_REDIS_USERNAME": "admin", "ARK_REDIS_PASSWORD": "b" * 32,
    "ARK_REDIS_URL": "redis://10.213.0.2:6379/0", "ARK_STATE_DIR": "/var/lib/ark",
    "ARK_LOG_DIR": "/var/log/ark", "TRADING_PAPER_ONLY": "true", "ARK_JOEY_SHARDS": "2",
    # operator extras (ark_runtime_env)
    "TELEGRAM_CHAT_ID": "@ark_alerts", "LLM_PROVIDER": "none", "ARK_FEATURE_BETA": "off",
}


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE_TEMPLATES),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["to_json"] = json.dumps
    return env


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
        ark_runtime_env_dir="/etc/ark/env", __ark_runtime_redis_acl_ready=True)
    files = re.findall(r"^EnvironmentFile=/etc/ark/env/(\w+)\.env$", text, re.M)
    assert files == UNITS[agent.split("-")[0]]  # a Joey shard loads Joey's domains
    # ... and then its own Redis user (issue 19 §3), last so it wins over infrastructure.env.
    last = re.findall(r"^EnvironmentFile=(.*)$", text, re.M)[-1]
    assert last == f"/etc/ark/env/redis/{agent}.env"


def test_before_the_redis_host_has_users_an_agent_keeps_the_shared_password() -> None:
    # Mid-roll, this release ahead of the Redis host's: no per-unit user file is loaded.
    text = _env().get_template("systemd/ark-agent-credentials.conf.j2").render(
        item="hrm", ansible_managed="managed", __ark_runtime_env_schema=SCHEMA,
        ark_runtime_env_dir="/etc/ark/env", __ark_runtime_redis_acl_ready=False)
    assert "/redis/" not in text
