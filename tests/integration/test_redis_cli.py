"""`invoke redis.cli` (issue #19 §3): the host-side command it sends logs in to a real
redis-server as admin with the password from the root-only env file, which never appears in
the command itself; the SSH and sudo around it are the fleet's (ark_ops/fleet/logs.py). The
tests' and the handbook's redis-cli lines log in the same way (as_root_tools, `rcli`)."""

from __future__ import annotations

import hashlib
import re
import secrets
import subprocess
import time

import pytest
from conftest import REDIS_SERVER, REPO, free_port

from ark_ops.fleet.redis_cli import RedisCliError, as_root_tools, remote_command
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


def test_a_host_without_a_user_logs_in_with_the_password_alone(redis_server, tmp_path) -> None:
    # An older release's env file (no ARK_REDIS_USERNAME) and its Redis (requirepass, no
    # admin user): mid-upgrade, the same command must still get in.
    env = tmp_path / "infrastructure.env"
    env.write_text(f'ARK_REDIS_PORT="{redis_server.port}"\n'
                   f'ARK_REDIS_PASSWORD="{redis_server.password}"\n')
    for command in (remote_command(["ACL", "WHOAMI"], env_file=str(env)),
                    as_root_tools(str(env)) + '-p "$ARK_REDIS_PORT" ACL WHOAMI'):
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "default", out.stdout + out.stderr


def test_a_password_other_than_the_env_files_by_its_shell_expression(acl_redis) -> None:
    # tests/e2e/test_lab_deploy.py's round trip: admin's password changed, then put back.
    env, passwords = acl_redis
    changed = "${ARK_REDIS_PASSWORD}-changed"

    def run(command: str) -> str:
        assert passwords["admin"] not in command
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                              timeout=30).stdout.strip()

    port = '-p "$ARK_REDIS_PORT" '
    assert run(as_root_tools(str(env)) + port + f'ACL SETUSER admin resetpass ">{changed}"') == "OK"
    assert run(as_root_tools(str(env)) + port + "PING") != "PONG"
    assert run(as_root_tools(str(env), password=changed) + port
               + 'ACL SETUSER admin resetpass ">$ARK_REDIS_PASSWORD"') == "OK"
    assert run(as_root_tools(str(env)) + port + "PING") == "PONG"


def test_the_handbooks_rcli_logs_in_as_admin(acl_redis) -> None:
    env, _passwords = acl_redis
    handbook = (REPO / "docs" / "OPS_HANDBOOK.md").read_text()
    rcli = re.search(r"^rcli\(\) \{.*\}$", handbook, re.MULTILINE)
    assert rcli, "docs/OPS_HANDBOOK.md defines no rcli() on one line"
    # As written, but without sudo and with this test's env file.
    define = rcli.group(0).replace("sudo ", "").replace("/etc/ark/env/infrastructure.env",
                                                         str(env))
    out = subprocess.run(["bash", "-c", define + "\nrcli ACL WHOAMI"], capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.strip() == "admin", out.stdout + out.stderr


def test_no_arguments_is_a_usage_error() -> None:
    with pytest.raises(RedisCliError, match="after --"):
        remote_command([])
