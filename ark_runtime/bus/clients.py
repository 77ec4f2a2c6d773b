"""Every redis-py client of ARK is made here, from one RedisSettings (issue #20).

Without Sentinels a client dials ARK_REDIS_HOST/PORT. With ARK_REDIS_SENTINELS it is redis-py's
Sentinel-managed client: each new connection asks the Sentinels which server is the primary of
ARK_REDIS_SENTINEL_MASTER, and a connection that finds a demoted primary (READONLY) or a dead
one is dropped, so the caller's next attempt reaches the new primary by itself. The Sentinels
are logged in to with the component's own user and password, over TLS when the bus is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
import redis.sentinel

from ark_runtime.config import RedisSettings

if TYPE_CHECKING:
    import redis.asyncio as aioredis

# How long asking a Sentinel may take before the next one is asked.
SENTINEL_TIMEOUT_S = 2.0


def _split(s: RedisSettings, kw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the data connections' arguments, the Sentinel connections' arguments)."""
    data = s.client_kwargs() | kw
    data.pop("host")
    data.pop("port")
    sentinel = {k: v for k, v in data.items() if k in {
        "username", "password", "ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile",
        "ssl_cert_reqs", "ssl_check_hostname"}}
    sentinel |= {"socket_timeout": SENTINEL_TIMEOUT_S,
                 "socket_connect_timeout": SENTINEL_TIMEOUT_S}
    return data, sentinel


def redis_client(s: RedisSettings, **kw: Any) -> redis.Redis:
    """A client of the pipeline's Redis (its primary, when Sentinels say which it is)."""
    if not s.sentinels:
        return redis.Redis(**(s.client_kwargs() | kw))
    data, sentinel = _split(s, kw)
    return redis.sentinel.Sentinel(list(s.sentinels), sentinel_kwargs=sentinel).master_for(
        s.sentinel_master, redis_class=redis.Redis, **data)


def async_redis_client(s: RedisSettings, **kw: Any) -> aioredis.Redis:
    """The asyncio twin of redis_client (the API; imported here so agents never load it)."""
    import redis.asyncio as aioredis
    import redis.asyncio.sentinel as aiosentinel

    if not s.sentinels:
        return aioredis.Redis(**(s.client_kwargs() | kw))
    data, sentinel = _split(s, kw)
    return aiosentinel.Sentinel(list(s.sentinels), sentinel_kwargs=sentinel).master_for(
        s.sentinel_master, redis_class=aioredis.Redis, **data)


def sentinel_replicas(s: RedisSettings) -> list[dict[str, Any]] | None:
    """Issue #20: the replicas the Sentinels know for ARK_REDIS_SENTINEL_MASTER, each with
    redis-py's parsed state (`is_sdown`, `is_odown`, `is_disconnected`, `master-link-status`),
    from the first Sentinel that answers; a replica that is down stays on the list. None
    without Sentinels; raises redis.RedisError when none answers."""
    if not s.sentinels:
        return None
    _, sentinel = _split(s, {"decode_responses": True})
    failure: redis.RedisError | None = None
    for host, port in s.sentinels:
        try:
            with redis.Redis(host=host, port=port, **sentinel) as client:
                return list(client.sentinel_slaves(s.sentinel_master))
        except redis.RedisError as exc:
            failure = exc
    raise failure or redis.ConnectionError("no Sentinel answered")
