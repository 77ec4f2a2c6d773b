"""SEC_01: ARK_REDIS_URL, declared in the env schema, is what the runtime connects with."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import redis
from conftest import Lab, RedisServer, free_port

from ark_runtime.bus.streams import connect
from ark_runtime.config import redis_settings

pytestmark = pytest.mark.requirement("SEC_01")


def test_url_overrides_host_port_and_password(redis_server: RedisServer) -> None:
    url = f"redis://:{quote(redis_server.password)}@127.0.0.1:{redis_server.port}/2"
    # The separate variables point nowhere useful: only the URL can make this work.
    settings = redis_settings({"ARK_REDIS_HOST": "127.0.0.1", "ARK_REDIS_PORT": str(free_port()),
                               "ARK_REDIS_PASSWORD": "zq-wrong-password-0000",
                               "ARK_REDIS_URL": url})
    client = connect(settings)
    assert client.ping() is True
    assert client.connection_pool.connection_kwargs["db"] == 2
    wrong = redis_settings({"ARK_REDIS_URL": f"redis://:nope-nope-nope@127.0.0.1:"
                                             f"{redis_server.port}"})
    with pytest.raises(redis.AuthenticationError):
        connect(wrong).ping()


def test_an_agent_started_with_only_the_url_gets_ready(lab: Lab, redis_server: RedisServer) -> None:
    url = f"redis://:{quote(redis_server.password)}@127.0.0.1:{redis_server.port}/0"
    agent = lab.start("joey", ARK_REDIS_URL=url, ARK_REDIS_PORT=str(free_port()),
                      ARK_REDIS_PASSWORD="")
    assert lab.stop(agent) == 0


def test_a_bad_log_level_is_a_config_error_not_a_crash(lab: Lab) -> None:
    agent = lab.start("kyle", wait=False, ARK_LOG_LEVEL="LOUD")
    assert agent.proc.wait(20) == 78
    err = agent.stderr()
    assert "ARK_LOG_LEVEL" in err and "Traceback" not in err
