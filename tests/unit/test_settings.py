"""SEC_01: one declaration of the environment; the schema files, the role and the runtime
all follow it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ark_runtime.agents import AGENTS, environment
from ark_runtime.bus.streams import BusSettings, default_consumer
from ark_runtime.config import RedisSettings, api_settings, redis_settings
from ark_runtime.settings import (
    UNITS,
    VARIABLES,
    SettingsError,
    default_of,
    load,
    schema,
    systemd_var,
)
from ark_runtime.settings.model import COMMANDS

pytestmark = pytest.mark.requirement("SEC_01")

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "zq-redis-password-0123456789"


# -- the generated files ---------------------------------------------------------------------


def test_committed_schema_files_match_the_declaration() -> None:
    text = schema.render()
    for path in (REPO / "ark_runtime/env.schema.yaml",):
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} is stale: run python -m ark_runtime.settings --write")
    assert schema.main(["--check"]) == 0
    # operators read it: no line wider than the project's 100 columns (yamllint's rule)
    assert max(map(len, text.splitlines())) <= 100


def test_check_detects_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    package = tmp_path / "env.schema.yaml"
    monkeypatch.setattr(schema, "PACKAGE_SCHEMA", package)
    assert schema.main(["--check"]) == 1  # missing counts as stale
    assert schema.main(["--write"]) == 0
    assert schema.main(["--check"]) == 0
    package.write_text(package.read_text().replace("default: 6379", "default: 6380"))
    assert schema.main(["--check"]) == 1
    assert "env.schema.yaml is stale" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        schema.main(["--frobnicate"])
    assert usage.value.code == 64


def test_schema_keeps_the_shape_the_role_reads() -> None:
    data = yaml.safe_load((REPO / "ark_runtime/env.schema.yaml").read_text())
    assert set(data) == {"version", "domains", "units", "variables", "patterns"}
    for name, spec in data["variables"].items():
        assert spec["domain"] in data["domains"], name
    for unit, domains in data["units"].items():
        assert set(domains) <= set(data["domains"]), unit
    # the units the role renders EnvironmentFile= lines for
    assert {"api", *AGENTS} <= set(data["units"])
    # what the role itself sets must be declared (roles/ark_runtime/tasks/config.yml asserts it)
    role_vars = (REPO / "roles/ark_runtime/vars/main.yml").read_text()
    for name in re.findall(r"'([A-Z][A-Z0-9_]+)':", role_vars):
        assert name in data["variables"], name


def test_every_reader_gets_the_variable_through_its_domains() -> None:
    for var in VARIABLES.values():
        assert set(var.read_by) <= {*UNITS, *COMMANDS}, var.name
        for reader in var.read_by:
            if reader in UNITS:
                assert var.domain in UNITS[reader], f"{reader} reads {var.name} without its domain"
    assert [u for u, d in UNITS.items() if "trading" in d] == ["kenny"]


def test_protocol_doc_table_comes_from_the_declaration() -> None:
    rows = {name: (agents, default) for name, agents, default, _ in environment()}
    read_by_agents = {v.name for v in VARIABLES.values() if set(v.read_by) & set(AGENTS)}
    assert read_by_agents <= set(rows)
    assert rows["ARK_BUS_BATCH"] == ("all", "64")
    assert rows["ARK_JOEY_WINDOW"] == ("joey", str(default_of("ARK_JOEY_WINDOW")))


# -- the runtime reads through it ------------------------------------------------------------


def test_load_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARK_REDIS_PORT", "6390")
    monkeypatch.setenv("ARK_LOG_LEVEL", "debug")
    cfg = load()
    assert (cfg.redis_port, cfg.log_level) == (6390, "DEBUG")
    # a mapping is checked alone: the process environment does not leak into it
    assert load({}).redis_port == default_of("ARK_REDIS_PORT") == 6379
    monkeypatch.setenv("ARK_REDIS_PORT", "sixty")
    with pytest.raises(SettingsError, match="ARK_REDIS_PORT: value 'sixty' is not an integer"):
        load()


def test_empty_value_means_unset_and_defaults_are_declared_once() -> None:
    cfg = load({"ARK_BUS_BATCH": "", "ARK_STATE_DIR": ""})
    assert cfg.bus_batch == default_of("ARK_BUS_BATCH")
    assert str(cfg.state_dir) == "/var/lib/ark"
    assert BusSettings() == BusSettings.from_env({})
    assert RedisSettings() == redis_settings({})
    assert api_settings({"ARK_API_PORT": "8200"}).port == 8200


def test_secrets_are_never_in_a_repr() -> None:
    cfg = load({"ARK_REDIS_PASSWORD": PASSWORD})
    assert PASSWORD not in repr(cfg) and PASSWORD not in str(cfg)
    assert cfg.secret_value("redis_password") == PASSWORD
    assert PASSWORD not in repr(redis_settings({"ARK_REDIS_PASSWORD": PASSWORD}))


def test_redis_url_overrides_host_port_password_db() -> None:
    s = redis_settings({
        "ARK_REDIS_HOST": "10.0.0.1", "ARK_REDIS_PORT": "6379", "ARK_REDIS_DB": "1",
        "ARK_REDIS_PASSWORD": PASSWORD,
        "ARK_REDIS_URL": "rediss://ark:p%40ss-from-the-url-123@redis.internal:6380/3",
    })
    assert (s.host, s.port, s.db, s.ssl) == ("redis.internal", 6380, 3, True)
    assert (s.username, s.password) == ("ark", "p@ss-from-the-url-123")
    # a part the URL leaves out keeps its own variable
    s = redis_settings({"ARK_REDIS_PASSWORD": PASSWORD, "ARK_REDIS_DB": "2",
                        "ARK_REDIS_URL": "redis://cache.internal"})
    assert (s.host, s.port, s.db, s.password, s.ssl) == ("cache.internal", 6379, 2, PASSWORD,
                                                         False)


@pytest.mark.parametrize("url, why", [
    ("http://x", "scheme must be one of redis, rediss"),
    ("redis://:pw@host:99999", "not a valid URL"),
    ("redis://:pw@host/16", "database must be 0..15"),
    ("redis:///0", "not a valid URL"),
])
def test_bad_redis_url_refused_without_echo(url: str, why: str) -> None:
    with pytest.raises(SettingsError) as caught:
        redis_settings({"ARK_REDIS_URL": url})
    assert caught.value.problems[0][0] == "ARK_REDIS_URL"
    assert why in str(caught.value) and url not in str(caught.value)


def test_bus_settings_and_consumer_name() -> None:
    s = BusSettings.from_env({"ARK_BUS_MAXLEN": "500", "ARK_BUS_CLAIM_EVERY_S": "0.5"})
    assert (s.maxlen, s.claim_every_s) == (500, 0.5)
    assert default_consumer("joey", "joey@blue") == "joey@blue"
    assert default_consumer("joey").startswith("joey@")


def test_systemd_variables_are_read_only_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    assert systemd_var("WATCHDOG_USEC") == "3000000"
    with pytest.raises(KeyError, match="declare it in ArkSettings"):
        systemd_var("ARK_REDIS_PASSWORD")
