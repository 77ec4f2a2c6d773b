"""benchmarks/pipeline_throughput.py measures the deployed Redis (issue #23 §3): the role's
AOF policy and RDB schedule, a user per agent from a 0600 aclfile, and no password on any
command line."""

from __future__ import annotations

import importlib.util
import stat
import sys
from pathlib import Path

import psutil
import pytest
import redis

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "pipeline_throughput", REPO / "benchmarks" / "pipeline_throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["pipeline_throughput"] = module
    spec.loader.exec_module(module)
    return module


def test_defaults_are_the_roles(bench):
    defaults = (REPO / "roles/ark_redis/defaults/main.yml").read_text()
    assert f"ark_redis_appendfsync: {bench.role_default('ark_redis_appendfsync')}\n" in defaults
    assert bench.role_default("ark_redis_save") in defaults
    assert "executor" in bench.CONSUMERS


def test_config_turns_aof_on_with_the_policy(bench, tmp_path):
    conf = bench.redis_config(1234, tmp_path, tmp_path / "u.acl", "everysec", "60 10")
    assert "appendonly yes\nappendfsync everysec\n" in conf
    assert 'save "60 10"' in conf and f"aclfile {tmp_path / 'u.acl'}" in conf
    assert "appendonly no" in bench.redis_config(1, tmp_path, tmp_path / "u", "no-aof", "")


def test_deployed_redis_users_and_no_secret_on_argv(bench):
    rds = bench.Redis("everysec", "")
    try:
        cmdline = " ".join(psutil.Process(rds.proc.pid).cmdline())
        for password in rds.passwords.values():
            assert password not in cmdline
        for name in ("users.acl", "redis.conf"):
            path = rds.dir / name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            text = path.read_text()
            assert not any(pw in text for pw in rds.passwords.values())
        assert rds.client.config_get("appendonly")["appendonly"] == "yes"
        assert rds.client.config_get("appendfsync")["appendfsync"] == "everysec"
        # Each agent is its own user, without the admin's commands; `default` is off.
        joey = redis.Redis(port=rds.port, **_login(rds.login("joey")))
        assert joey.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            joey.flushall()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=rds.port, password=rds.passwords["joey"]).ping()
    finally:
        rds.close()


def test_single_password_is_the_old_setup(bench):
    rds = bench.Redis("no-aof", "", single_password=True)
    try:
        env = rds.login("hrm")
        assert "ARK_REDIS_USERNAME" not in env
        assert redis.Redis(port=rds.port, **_login(env)).ping()
        assert rds.client.config_get("appendonly")["appendonly"] == "no"
    finally:
        rds.close()


def _login(env: dict[str, str]) -> dict[str, str | None]:
    return {"username": env.get("ARK_REDIS_USERNAME"), "password": env["ARK_REDIS_PASSWORD"]}
