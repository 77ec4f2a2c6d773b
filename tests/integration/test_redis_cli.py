"""`invoke redis.cli` (issue #19 §3): the host-side command it sends logs in to a real
redis-server as admin with the password from the root-only env file, which never appears in
the command itself; the SSH and sudo around it are the fleet's (ark_ops/fleet/logs.py)."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import time

import pytest
from conftest import REDIS_SERVER, free_port

from ark_ops.fleet.redis_cli import RedisCliError, remote_command
from ark_runtime.bus.acl import render_acl_file, user_names


@pytest.fixture
def acl_redis(tmp_path):
    passwords = {n: secrets.token_hex(16) for n in user_names(1)}
    acl = tmp_path / "users.acl"
    acl.write_text(render_acl_file(
        {n: hashlib.sha256(p.encode()).hexdigest() for n, p in passwords.items()}))
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                             "--aclfile", str(acl), "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    env = tmp_path / "infrastructure.env"
    env.write_text(f'ARK_REDIS_HOST="127.0.0.1"\nARK_REDIS_PORT="{port}"\n'
                   f'ARK_REDIS_USERNAME="admin"\nARK_REDIS_PASSWORD="{passwords["admin"]}"\n')
    env.chmod(0o600)
    deadline = time.monotonic() + 20
    while subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True,
                         text=True).stdout.strip() not in ("PONG", "NOAUTH Authentication "
                                                                   "required."):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    yield env, passwords
    proc.terminate()
    proc.wait(10)


def test_runs_as_admin_with_the_password_off_the_command_line(acl_redis) -> None:
    env, passwords = acl_redis
    command = remote_command(["ACL", "WHOAMI"], env_file=str(env))
    assert passwords["admin"] not in command
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "admin", out.stderr
    # A word with shell characters reaches redis-cli as one argument, not as shell.
    key = "ark:probe; touch /tmp/ark-redis-cli-injected"
    subprocess.run(["sh", "-c", remote_command(["SET", key, "x y"], env_file=str(env))],
                   check=True, capture_output=True, timeout=30)
    got = subprocess.run(["sh", "-c", remote_command(["GET", key], env_file=str(env))],
                         capture_output=True, text=True, timeout=30)
    assert got.stdout.strip() == "x y"


def test_no_arguments_is_a_usage_error() -> None:
    with pytest.raises(RedisCliError, match="after --"):
        remote_command([])
