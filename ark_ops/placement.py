"""INFRA_01: which agent instances each ark_agents host runs. One pipeline per Redis.

The ark_agents hosts that share a Redis server (a pipeline's peers) run Kyle, each Joey
shard, Kenny and HRM exactly once between them: two Kyles on one feed would emit every bar
twice, two Joeys in one shard's group would break its per-symbol order, and two HRMs would
each enforce the risk limits on half the decisions. A host with a Redis of its own (the lab's
"all" topology, a one-host fleet) runs the whole pipeline.

The instances are dealt out over the peers, sorted by name, in pipeline order: with peers
[a, b] and one Joey shard, a runs kyle and kenny, b runs joey and hrm. The role
(plugins/filter/ark_placement.py) and the compliance suite (tests/compliance/conftest.py)
both ask this module, so the hosts and the checks of them agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ark_runtime import pipeline as declaration

AGENTS = declaration.NAMES


class PlacementError(ValueError):
    """The inventory cannot be placed (names the variable at fault)."""


def instances(shards: int) -> list[str]:
    """The pipeline's agent instances in flow order: Joey's shard 0 is `joey`, shard k `joey-k`."""
    if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= 64:
        raise PlacementError(f"ark_runtime_joey_shards must be a whole number from 1 to 64, "
                             f"got {shards!r}")
    return declaration.instances(shards)


def redis_server(host: str, redis_hosts: Iterable[str], override: str | None = None) -> str:
    """The ark_redis host whose Redis `host` uses (the role's ark_runtime_redis_server):
    its own when it is one, else the first ark_redis host; '' when there is none."""
    if override:
        return override
    redis_hosts = list(redis_hosts)
    return host if host in redis_hosts else (redis_hosts[0] if redis_hosts else "")


def remote_clients(server: str, hosts: Iterable[str], server_of: Mapping[str, str]) -> list[str]:
    """The hosts that reach `server`'s Redis over the network (issue #19 §4: TLS is on for a
    Redis with any): every ARK host whose Redis it is, other than the server itself."""
    return sorted(h for h in hosts if h != server and server_of.get(h, "") == server)


def redis_tls_on(setting: object, remote: Iterable[str]) -> bool:
    """Issue #19 §4, the one rule: TLS when asked (true), never (false), or - auto - when
    any host reaches this Redis over the network (`remote`, from remote_clients)."""
    value = str(setting).strip().lower()
    if value not in ("auto", "true", "false"):
        raise PlacementError("ark_redis_tls must be auto, true or false; "
                             f"got {str(setting)[:40]!r}")
    return value == "true" or (value == "auto" and bool(list(remote)))


def peers(host: str, agent_hosts: Iterable[str], server_of: Mapping[str, str]) -> list[str]:
    """The ark_agents hosts (sorted by name) that share `host`'s Redis, `host` among them."""
    mine = server_of.get(host, "")
    return sorted({h for h in agent_hosts if server_of.get(h, "") == mine} | {host})


def pipeline(host: str, agent_hosts: Iterable[str], server_of: Mapping[str, str],
             shards: int) -> dict[str, str]:
    """{instance: host} for the pipeline `host` belongs to; {} outside ark_agents."""
    agent_hosts = list(agent_hosts)
    if host not in agent_hosts:
        return {}
    group = peers(host, agent_hosts, server_of)
    return {name: group[i % len(group)] for i, name in enumerate(instances(shards))}


def host_instances(host: str, agent_hosts: Iterable[str], server_of: Mapping[str, str],
                   shards: int) -> list[str]:
    """The agent instances `host` runs, in flow order: [] outside ark_agents."""
    return [name for name, where in pipeline(host, agent_hosts, server_of, shards).items()
            if where == host]


def agent_of(instance: str) -> str:
    """`joey-3` -> `joey`."""
    return instance.split("-", 1)[0]


def shard_of(instance: str) -> int:
    """`joey` -> 0, `joey-3` -> 3."""
    return int(instance.split("-", 1)[1]) if "-" in instance else 0
