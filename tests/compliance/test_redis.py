"""SEC_01: Redis listens only on the host's addresses and requires its password.

The password never crosses the command line and never reaches Python: the host's shell
reads it from the root-only env file and hands it to redis-cli through its environment
(REDISCLI_AUTH), so a failing check cannot print it.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.requirement("SEC_01"), pytest.mark.runs_on("ark_redis")]

ENV_FILE = "/etc/ark/env/infrastructure.env"
# Expanded on the host: the command line holds the variable's name, not its value.
WITH_PASSWORD = (f"set -a; . {ENV_FILE}; set +a; "
                 'REDISCLI_AUTH="$ARK_REDIS_PASSWORD" ')


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


@pytest.mark.runs_on("ark")
def test_deployed_password_is_long(host):
    length = host.check_output(f"set -a; . {ENV_FILE}; set +a; " + 'echo "${#ARK_REDIS_PASSWORD}"')
    assert int(length) >= 32, f"ARK_REDIS_PASSWORD has {length} characters, expected 32 or more"


def test_redis_accepts_the_deployed_password(host, redis_addr):
    addr, port = redis_addr
    out = host.run(WITH_PASSWORD + "redis-cli -h %s -p %s ping", addr, str(port))
    assert out.stdout.strip() == "PONG", f"redis-cli ping answered {out.stdout + out.stderr!r}"
