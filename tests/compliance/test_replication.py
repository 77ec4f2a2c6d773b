"""INFRA_01 (issue #20 §1): a Redis set with replicas can fail over by itself.

Every member follows the primary the Sentinels name (a replica's link is up), each Sentinel
sees the whole set and its peers, a component may only ask a Sentinel where the primary is,
and every ARK host of the pipeline finds the primary through the Sentinels and waits for a
replica on each commit. Hosts whose Redis has no replica skip these checks and say why.

Passwords stay on the host: redis-cli logs in through the root-only env file (as_root_tools).
"""

from __future__ import annotations

import re

import pytest

from ark_ops import placement
from ark_ops.fleet.redis_cli import TLS_FLAGS, as_root_tools
from ark_ops.verify.report import NOT_HERE

# INFRA_01 only: test_mutations.py holds every compliance check's requirement to a mutation
# that turns it red, and the lab drills (tests/e2e/test_rolling_upgrade.py) are AGENT_02's.
pytestmark = pytest.mark.requirement("INFRA_01")

ENV_FILE = "/etc/ark/env/infrastructure.env"
AS_ADMIN = as_root_tools(ENV_FILE)


def _fields(text: str) -> dict[str, str]:
    """redis-cli's raw answer to SENTINEL MASTER / INFO: name and value lines, or key:value."""
    lines = text.splitlines()
    if any(":" in ln for ln in lines) and not lines[0].startswith("name"):
        return dict(ln.split(":", 1) for ln in lines if ":" in ln and not ln.startswith("#"))
    return dict(zip(lines[::2], lines[1::2], strict=False))


def _sentinel_port(hostvars) -> int:
    return int(hostvars.get("ark_redis_sentinel_port", 26379))


@pytest.fixture(scope="module")
def replicated(redis_set, hostvars) -> list[str]:
    if len(redis_set) < 2:
        pytest.skip(f"{NOT_HERE}{hostvars['inventory_hostname']}'s Redis has no replica")
    return redis_set


def _ask_sentinel(host, port: int, *words: str) -> str:
    out = host.run(AS_ADMIN + "-h 127.0.0.1 -p %s " + " ".join(["%s"] * len(words)),
                   str(port), *words)
    assert out.rc == 0 and "ERR" not in out.stdout, out.stdout + out.stderr[-500:]
    return out.stdout


def _groups(hostvars, name: str) -> list[str]:
    return list(hostvars.get("groups", {}).get(name, []))


@pytest.mark.runs_on("ark_redis")
def test_each_member_follows_the_primary_the_sentinels_name(host, hostvars, replicated):
    master = placement.sentinel_master(replicated[0])
    runner = host.backend.ansible_runner
    sentinel = _groups(hostvars, "ark_sentinel")[0]
    # Any Sentinel answers for all: ask one over the network, as a client would.
    primary_ip = host.run(
        AS_ADMIN + "-h %s -p %s SENTINEL GET-MASTER-ADDR-BY-NAME %s",
        runner.get_variables(sentinel).get("ansible_host"), str(_sentinel_port(hostvars)),
        master)
    assert primary_ip.rc == 0, primary_ip.stderr[-500:]
    named = primary_ip.stdout.split()[0]
    info = _fields(host.check_output(AS_ADMIN + '-p "$ARK_REDIS_PORT" INFO replication'))
    if named == hostvars["ansible_host"]:
        assert info["role"] == "master"
        assert int(info["connected_slaves"]) == len(replicated) - 1, info
    else:
        assert info["role"] == "slave", info
        assert info["master_host"] == named and info["master_link_status"] == "up", info


@pytest.mark.runs_on("ark_sentinel")
def test_each_sentinel_runs_and_sees_the_set_and_its_peers(host, hostvars, redis_set):
    assert host.service("redis-sentinel").is_running
    assert host.service("redis-sentinel").is_enabled
    runner = host.backend.ansible_runner
    sentinels = _groups(hostvars, "ark_sentinel")
    for primary in _watched(host, hostvars):
        master = placement.sentinel_master(primary)
        got = _fields(_ask_sentinel(host, _sentinel_port(hostvars), "SENTINEL", "MASTER", master))
        members = 1 + len([h for h in _groups(hostvars, "ark_redis")
                           if runner.get_variables(h).get("ark_redis_replica_of") == primary])
        assert got["flags"] == "master", got  # not s_down / o_down
        assert int(got["num-slaves"]) == members - 1, got
        assert int(got["num-other-sentinels"]) == len(sentinels) - 1, got
        assert int(got["quorum"]) == placement.sentinel_quorum(len(sentinels)), got


def _watched(host, hostvars) -> list[str]:
    """The primaries (inventory names) of the sets with replicas: what the Sentinels watch."""
    runner = host.backend.ansible_runner
    return sorted({runner.get_variables(h).get("ark_redis_replica_of")
                   for h in _groups(hostvars, "ark_redis")} - {None, ""})


# A component's own login, from its unit's env file (the password stays on the host).
AS_COMPONENT = (f"set -a; . {ENV_FILE}; . /etc/ark/env/redis/%s.env; set +a; "
                'REDISCLI_AUTH="$ARK_REDIS_PASSWORD" redis-cli --no-auth-warning '
                '--user "$ARK_REDIS_USERNAME" ' + TLS_FLAGS)


@pytest.mark.runs_on("ark_sentinel")
def test_a_component_may_ask_a_sentinel_where_the_primary_is_and_nothing_more(
        host, hostvars, redis_set):
    watched = _watched(host, hostvars)
    if not watched:
        pytest.skip(f"{NOT_HERE}no Redis set has replicas")
    master = placement.sentinel_master(watched[0])
    port = str(_sentinel_port(hostvars))
    ask = AS_COMPONENT + "-h 127.0.0.1 -p %s SENTINEL %s %s"
    where = host.run(ask, "exporter", port, "GET-MASTER-ADDR-BY-NAME", master)
    assert where.rc == 0 and re.match(r"^[0-9a-f.:]+\n\d+$", where.stdout.strip()), \
        where.stdout + where.stderr[-300:]
    for words in (("FAILOVER", master), ("RESET", master), ("REMOVE", master)):
        out = host.run(ask, "exporter", port, *words)
        assert "NOPERM" in out.stdout + out.stderr, (words, out.stdout, out.stderr[-300:])


@pytest.mark.runs_on("ark")
def test_the_pipeline_finds_its_primary_through_the_sentinels_and_waits_for_a_replica(
        host, hostvars):
    env = dict(re.findall(r'^(ARK_[A-Z_]+)="?(.*?)"?$', host.file(ENV_FILE).content_string,
                          re.MULTILINE))
    runner = host.backend.ansible_runner
    server = runner.get_variables(hostvars["inventory_hostname"]).get("ark_runtime_redis_server")
    redis_hosts = _groups(hostvars, "ark_redis")
    replica_of = {h: runner.get_variables(h).get("ark_redis_replica_of") for h in redis_hosts}
    server = placement.redis_server(hostvars["inventory_hostname"], redis_hosts, server,
                                    replica_of)
    if not placement.redis_sets(redis_hosts, replica_of).get(server):
        assert "ARK_REDIS_SENTINELS" not in env
        pytest.skip(f"{NOT_HERE}this host's Redis ({server}) has no replica")
    sentinels = _groups(hostvars, "ark_sentinel")
    assert len(env["ARK_REDIS_SENTINELS"].split(",")) == len(sentinels), env
    assert env["ARK_REDIS_SENTINEL_MASTER"] == placement.sentinel_master(server)
    assert int(env.get("ARK_BUS_WAIT_REPLICAS", "0")) >= 1, "commits would not wait for a replica"
