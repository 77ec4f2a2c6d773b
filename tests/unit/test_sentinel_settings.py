"""Issue #20: ARK_REDIS_SENTINELS / ARK_REDIS_SENTINEL_MASTER, parsed once by the settings
layer; a bad value is refused naming the variable, and nothing else of the settings changes."""

from __future__ import annotations

import pytest
import redis.asyncio.sentinel
import redis.sentinel
from hypothesis import given
from hypothesis import strategies as st

from ark_runtime.bus.clients import async_redis_client, redis_client
from ark_runtime.config import redis_settings
from ark_runtime.settings import SettingsError

PASSWORD = "p" * 20
hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.from_regex(r"[a-z]([a-z0-9-]{0,18}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,8}[a-z0-9])?){0,2}",
                  fullmatch=True),
)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(1, 65535)
sentinel = st.one_of(st.tuples(hosts, ports).map(lambda hp: (hp[0], hp[1], f"{hp[0]}:{hp[1]}")),
                     st.tuples(ipv6, ports).map(lambda hp: (hp[0], hp[1], f"[{hp[0]}]:{hp[1]}")))


@given(st.lists(sentinel, min_size=1, max_size=5))
def test_every_sentinel_address_is_read_in_order(items) -> None:
    text = ",".join(t for _, _, t in items)
    s = redis_settings({"ARK_REDIS_SENTINELS": text, "ARK_REDIS_PASSWORD": PASSWORD})
    assert s.sentinels == tuple((h, p) for h, p, _ in items)
    assert s.sentinel_master == "ark"


@given(st.lists(sentinel, min_size=1, max_size=3),
       st.sampled_from(["", "h", "h:0", "h:65536", "h:x", "h :1", "[not-v6]:1", "a_b:1"]),
       st.integers(0, 3))
def test_a_bad_sentinel_list_is_refused_naming_the_variable(items, bad, at) -> None:
    parts = [t for _, _, t in items]
    parts.insert(min(at, len(parts)), bad)
    text = ",".join(parts)
    with pytest.raises(SettingsError, match="ARK_REDIS_SENTINELS") as err:
        redis_settings({"ARK_REDIS_SENTINELS": text, "ARK_REDIS_PASSWORD": PASSWORD})
    assert PASSWORD not in str(err.value)


def test_no_sentinels_is_a_plain_client_and_sentinels_a_managed_one() -> None:
    plain = redis_client(redis_settings({"ARK_REDIS_PASSWORD": PASSWORD}))
    assert not isinstance(plain.connection_pool, redis.sentinel.SentinelConnectionPool)
    s = redis_settings({"ARK_REDIS_SENTINELS": "127.0.0.1:1,127.0.0.1:2",
                        "ARK_REDIS_SENTINEL_MASTER": "pipeline-b",
                        "ARK_REDIS_USERNAME": "kyle", "ARK_REDIS_PASSWORD": PASSWORD})
    managed = redis_client(s)
    pool = managed.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.service_name == "pipeline-b"
    # The Sentinels are asked with the component's own login, never the default user.
    asked = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert (asked["username"], asked["password"]) == ("kyle", PASSWORD)
    # The API's asyncio clients the same way.
    apool = async_redis_client(s).connection_pool
    assert isinstance(apool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert apool.service_name == "pipeline-b"
    assert "sentinels=(('127.0.0.1', 1), ('127.0.0.1', 2))" in repr(s)
    assert PASSWORD not in repr(s)


def test_a_bad_master_name_is_refused_naming_it() -> None:
    with pytest.raises(SettingsError, match="ARK_REDIS_SENTINEL_MASTER"):
        redis_settings({"ARK_REDIS_SENTINEL_MASTER": "no spaces", "ARK_REDIS_PASSWORD": PASSWORD})
