"""`ark_agent_placement`: the agent instances a host runs (INFRA_01, ark_ops/placement.py).

    {{ hostvars | ark_agent_placement(inventory_hostname, groups, ark_runtime_joey_shards) }}

A host's Redis server is its inventory's ark_runtime_redis_server when set there, else the
role's rule (its own when it is a primary of ark_redis, else the first primary; a replica,
`ark_redis_replica_of`, belongs to its primary's pipeline).

    {{ hostvars | ark_redis_sets(groups) }}             -> {primary: [its replicas]}
    {{ hostvars | ark_redis_server(inventory_hostname, groups) }}   -> the role's rule
    {{ primary | ark_sentinel_master }}                 -> the Sentinels' name for its set
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


def _replica_of(hostvars, groups) -> dict[str, str]:
    return {h: str(hostvars[h].get("ark_redis_replica_of") or "")
            for h in groups.get("ark_redis", [])}


def _server_of(hostvars, groups, hosts) -> dict[str, str]:
    redis_hosts = list(groups.get("ark_redis", []))
    replica_of = _replica_of(hostvars, groups)
    return {h: placement.redis_server(h, redis_hosts, hostvars[h].get("ark_runtime_redis_server"),
                                      replica_of) for h in hosts}


def ark_redis_sets(hostvars, groups) -> dict[str, list[str]]:
    try:
        return placement.redis_sets(groups.get("ark_redis", []), _replica_of(hostvars, groups))
    except placement.PlacementError as exc:
        raise AnsibleFilterError(f"ark_redis_sets: {exc}") from None


def ark_redis_server(hostvars, host: str, groups) -> str:
    """The role's default ark_runtime_redis_server for `host` (no override)."""
    return placement.redis_server(host, list(groups.get("ark_redis", [])), None,
                                  _replica_of(hostvars, groups))


def ark_redis_live_primaries(results: list, hostvars, groups) -> dict[str, str]:
    """{set primary: its primary now} from the Sentinels' GET-MASTER-ADDR-BY-NAME answers
    (tasks/replication.yml registers one result per sentinel host and set, item [host, set])."""
    sentinels = len(groups.get("ark_sentinel", []))
    out = {}
    for primary, replicas in ark_redis_sets(hostvars, groups).items():
        if not replicas:
            continue
        named = [r["stdout_lines"][0] for r in results
                 if r.get("item", [None, None])[1] == primary and r.get("rc") == 0
                 and len(r.get("stdout_lines", [])) == 2]
        members = [primary, *replicas]
        address_of = {m: str(hostvars[m].get("ark_listen_address")
                             or hostvars[m].get("ansible_host") or m) for m in members}
        try:
            out[primary] = placement.live_primary(primary, named, sentinels, address_of, members)
        except placement.PlacementError as exc:
            raise AnsibleFilterError(str(exc)) from None
    return out


def ark_redis_failover_problems(hostvars, groups) -> list[str]:
    """Issue #20's preflight: one sentence per replicated set that cannot fail over by
    itself (placement.failover_problem); a machine is a host's ansible_host."""
    sentinels = list(groups.get("ark_sentinel", []))
    address_of = {h: str(hostvars[h].get("ansible_host") or h)
                  for h in {*groups.get("ark_redis", []), *sentinels}}
    problems = [placement.failover_problem(primary, replicas, sentinels, address_of)
                for primary, replicas in ark_redis_sets(hostvars, groups).items()]
    return [p for p in problems if p]


def ark_sentinel_master(primary: str) -> str:
    return placement.sentinel_master(str(primary))


def ark_sentinel_quorum(sentinels) -> int:
    return placement.sentinel_quorum(int(sentinels))


def ark_agent_placement(hostvars, host: str, groups, shards) -> list[str]:
    agent_hosts = list(groups.get("ark_agents", []))
    server_of = _server_of(hostvars, groups, {*agent_hosts, host})
    try:
        return placement.host_instances(host, agent_hosts, server_of, int(shards))
    except (placement.PlacementError, ValueError, TypeError) as exc:
        raise AnsibleFilterError(f"ark_agent_placement: {exc}") from None


def ark_redis_remote_clients(hostvars, server: str, groups) -> list[str]:
    """The ARK hosts that use `server`'s Redis over the network (TLS when any, issue #19 §4)."""
    hosts = list(groups.get("ark", []))
    server_of = _server_of(hostvars, groups, hosts)
    return placement.remote_clients(server, hosts, server_of)


def ark_redis_tls_on(hostvars, server: str, groups, setting) -> bool:
    """Whether `server`'s Redis speaks TLS (ark_redis_tls: auto, true or false)."""
    if not server:
        return False
    # Issue #20: a replicated set's members reach one another (replication, Sentinels, and
    # clients after a failover), so under `auto` the whole set speaks TLS.
    sets = ark_redis_sets(hostvars, groups)
    primary = _replica_of(hostvars, groups).get(server) or server
    remote = [h for h in [primary, *sets.get(primary, [])] if h != server]
    try:
        return placement.redis_tls_on(
            setting, [*ark_redis_remote_clients(hostvars, primary, groups), *remote])
    except placement.PlacementError as exc:
        raise AnsibleFilterError(f"ark_redis_tls_on: {exc}") from None


class FilterModule:
    def filters(self):
        return {"ark_agent_placement": ark_agent_placement,
                "ark_redis_remote_clients": ark_redis_remote_clients,
                "ark_redis_tls_on": ark_redis_tls_on,
                "ark_redis_sets": ark_redis_sets,
                "ark_redis_server": ark_redis_server,
                "ark_sentinel_master": ark_sentinel_master,
                "ark_redis_live_primaries": ark_redis_live_primaries,
                "ark_sentinel_quorum": ark_sentinel_quorum,
                "ark_redis_failover_problems": ark_redis_failover_problems}
