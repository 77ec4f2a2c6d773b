"""`ark_agent_placement`: the agent instances a host runs (INFRA_01, ark_ops/placement.py).

    {{ hostvars | ark_agent_placement(inventory_hostname, groups, ark_runtime_joey_shards) }}

A host's Redis server is its inventory's ark_runtime_redis_server when set there, else the
role's rule (its own when it is in ark_redis, else the first ark_redis host).
"""

from __future__ import annotations

import sys
from pathlib import Path

# ark_ops is the repo's control-side package, not an installed one: found from here.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from ansible.errors import AnsibleFilterError  # noqa: E402

from ark_ops import placement  # noqa: E402


def ark_agent_placement(hostvars, host: str, groups, shards) -> list[str]:
    agent_hosts = list(groups.get("ark_agents", []))
    redis_hosts = list(groups.get("ark_redis", []))
    server_of = {
        h: placement.redis_server(h, redis_hosts, hostvars[h].get("ark_runtime_redis_server"))
        for h in {*agent_hosts, host}
    }
    try:
        return placement.host_instances(host, agent_hosts, server_of, int(shards))
    except (placement.PlacementError, ValueError, TypeError) as exc:
        raise AnsibleFilterError(f"ark_agent_placement: {exc}") from None


def ark_redis_remote_clients(hostvars, server: str, groups) -> list[str]:
    """The ARK hosts that use `server`'s Redis over the network (TLS when any, issue #19 §4)."""
    hosts = list(groups.get("ark", []))
    redis_hosts = list(groups.get("ark_redis", []))
    server_of = {h: placement.redis_server(h, redis_hosts,
                                           hostvars[h].get("ark_runtime_redis_server"))
                 for h in hosts}
    return placement.remote_clients(server, hosts, server_of)


def ark_redis_tls_on(hostvars, server: str, groups, setting) -> bool:
    """Whether `server`'s Redis speaks TLS (ark_redis_tls: auto, true or false)."""
    if not server:
        return False
    try:
        return placement.redis_tls_on(setting, ark_redis_remote_clients(hostvars, server, groups))
    except placement.PlacementError as exc:
        raise AnsibleFilterError(f"ark_redis_tls_on: {exc}") from None


class FilterModule:
    def filters(self):
        return {"ark_agent_placement": ark_agent_placement,
                "ark_redis_remote_clients": ark_redis_remote_clients,
                "ark_redis_tls_on": ark_redis_tls_on}
