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

from collections import Counter
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


def redis_server(host: str, redis_hosts: Iterable[str], override: str | None = None,
                 replica_of: Mapping[str, str] | None = None) -> str:
    """The ark_redis host whose Redis `host` uses (the role's ark_runtime_redis_server):
    its own when it is a primary, else the first primary of ark_redis; '' when there is
    none. A replica (issue #20: `ark_redis_replica_of`) is never a pipeline's server: its
    pipeline is its primary's, found through the Sentinels."""
    if override:
        return override
    replica_of = replica_of or {}
    primaries = [h for h in redis_hosts if not replica_of.get(h)]
    return host if host in primaries else (primaries[0] if primaries else "")


def redis_sets(redis_hosts: Iterable[str], replica_of: Mapping[str, str]) -> dict[str, list[str]]:
    """Issue #20: {primary: its replicas (sorted)} of the ark_redis hosts; a replica names
    its primary in `ark_redis_replica_of`. Refused, naming the host: a primary that is not
    an ark_redis host, is the replica itself, or is another replica (no chains)."""
    redis_hosts = list(redis_hosts)
    sets: dict[str, list[str]] = {h: [] for h in redis_hosts if not replica_of.get(h)}
    for host in sorted(h for h in redis_hosts if replica_of.get(h)):
        primary = str(replica_of[host])
        if primary == host:
            raise PlacementError(f"ark_redis_replica_of on {host} names {host} itself")
        if primary not in redis_hosts:
            raise PlacementError(f"ark_redis_replica_of on {host} names {primary[:60]!r}, "
                                 "which is not in the ark_redis group")
        if primary not in sets:
            raise PlacementError(f"ark_redis_replica_of on {host} names {primary}, itself a "
                                 "replica: replicas follow a primary directly")
        sets[primary].append(host)
    return sets


def sentinel_master(primary: str) -> str:
    """The name the Sentinels monitor `primary`'s Redis set under (ARK_REDIS_SENTINEL_MASTER):
    one per pipeline, so several pipelines can share the Sentinels."""
    return "ark-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in primary)[:60]


def failover_problem(primary: str, replicas: Iterable[str], sentinels: Iterable[str],
                     address_of: Mapping[str, str]) -> str | None:
    """Issue #20's preflight: None when `primary`'s set can fail over by itself, else the one
    sentence that says why not. A set with no replica needs no Sentinel."""
    replicas, sentinels = list(replicas), list(sentinels)
    if not replicas:
        return None
    places = {address_of.get(s, s) for s in sentinels}
    if len(sentinels) < 3:
        return (f"{primary}'s Redis has replicas but {len(sentinels)} sentinel(s) in "
                "ark_sentinel: a failover needs at least 3 (quorum 2) so that one lost host "
                "still leaves a majority")
    if len(places) < 3:
        return (f"{primary}'s sentinels ({', '.join(sorted(sentinels))}) run on "
                f"{len(places)} machine(s): losing one could take the majority with it; "
                "put them on at least 3")
    if len({address_of.get(h, h) for h in [primary, *replicas]}) < 2:
        return (f"{primary}'s replicas run on the same machine as it: a lost machine takes "
                "every copy")
    return None


def live_primary(primary: str, named: Iterable[str], sentinels: int,
                 address_of: Mapping[str, str], members: Iterable[str]) -> str:
    """Issue #20: the member of `primary`'s set that the Sentinels name primary now, from the
    addresses each answering Sentinel gave ('' for none). No answer at all (a first deploy,
    before any Sentinel runs): the inventory's `primary`. Refused, in one sentence, when the
    answers have no majority of the Sentinels or name an address outside the set: a deploy
    must never demote the primary the clients use."""
    answers = Counter(a for a in named if a)
    if not answers:
        return primary
    [(top, count)] = answers.most_common(1)
    if count < sentinel_quorum(sentinels):
        raise PlacementError(f"the Sentinels do not agree on {primary}'s primary "
                             f"({', '.join(sorted(answers))}; {count} of {sentinels} name "
                             f"{top}): run `invoke redis.status`, and deploy again once they "
                             "agree")
    for member in members:
        if address_of.get(member) == top:
            return member
    raise PlacementError(f"the Sentinels name {top} primary of {primary}'s set, which is no "
                         "member's address (ark_listen_address) in the inventory")


def sentinel_quorum(sentinels: int) -> int:
    """The Sentinels that must agree a primary is down: a majority of them."""
    return sentinels // 2 + 1


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
