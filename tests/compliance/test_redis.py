"""SEC_01: Redis listens only on the host's addresses and requires its password."""

from __future__ import annotations

import pytest
from conftest import env_value, quote

pytestmark = pytest.mark.requirement("SEC_01")

ENV_FILE = "/etc/ark/env/infrastructure.env"


@pytest.fixture(scope="module")
def redis_addr(hostvars):
    return hostvars["ansible_host"], int(hostvars.get("ark_redis_port", 6379))


def test_redis_listens_on_loopback_and_host_address_only(host, redis_addr):
    addr, port = redis_addr
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert host.socket(f"tcp://{addr}:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_redis_refuses_commands_without_password(host, redis_addr):
    addr, port = redis_addr
    out = host.run("redis-cli -h %s -p %s ping", addr, str(port))
    assert "NOAUTH" in out.stdout + out.stderr


def test_redis_refuses_a_wrong_password(host, redis_addr):
    addr, port = redis_addr
    out = host.run("REDISCLI_AUTH=not-the-password redis-cli -h %s -p %s ping", addr, str(port))
    assert "PONG" not in out.stdout
    assert "WRONGPASS" in out.stdout + out.stderr or "invalid" in (out.stdout + out.stderr)


def test_redis_accepts_the_deployed_password(host, redis_addr):
    addr, port = redis_addr
    password = env_value(host, ENV_FILE, "ARK_REDIS_PASSWORD")
    assert len(password) >= 32
    # REDISCLI_AUTH keeps the password off the process list.
    out = host.check_output(f"REDISCLI_AUTH={quote(password)} redis-cli -h %s -p %s ping",
                            addr, str(port))
    assert out.strip() == "PONG"
