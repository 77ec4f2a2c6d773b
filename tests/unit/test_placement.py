"""INFRA_01: one pipeline per Redis, each agent instance run exactly once among its hosts
(ark_ops/placement.py), and the role's filter giving the same answer from hostvars."""

from __future__ import annotations

import importlib.util

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given
from hypothesis import strategies as st

from ark_ops import placement
from ark_ops.paths import REPO_ROOT

names = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), min_size=1,
                 max_size=9, unique=True)


@st.composite
def fleets(draw):
    """(agent hosts, redis hosts, shards): some agent hosts have a Redis of their own."""
    hosts = draw(names)
    redis = draw(st.lists(st.sampled_from(hosts), unique=True, max_size=len(hosts)))
    extra = ["redis-only"] if draw(st.booleans()) else []
    return hosts, extra + redis, draw(st.integers(1, 12))


def servers(hosts, redis_hosts):
    return {h: placement.redis_server(h, redis_hosts) for h in hosts}


@given(fleets())
def test_every_pipeline_runs_each_instance_exactly_once(fleet):
    hosts, redis_hosts, shards = fleet
    server_of = servers(hosts, redis_hosts)
    for server in set(server_of.values()):
        members = [h for h in hosts if server_of[h] == server]
        placed = [i for h in members for i in placement.host_instances(h, hosts, server_of,
                                                                       shards)]
        assert sorted(placed) == sorted(placement.instances(shards)), (server, members)
        # Spread evenly: no host has more than one instance over another's share.
        sizes = [len(placement.host_instances(h, hosts, server_of, shards)) for h in members]
        assert max(sizes) - min(sizes) <= 1, sizes


@given(fleets())
def test_a_host_alone_on_its_own_redis_runs_the_whole_pipeline(fleet):
    hosts, redis_hosts, shards = fleet
    server_of = servers(hosts, redis_hosts)
    for h in hosts:
        if list(server_of.values()).count(h) == 1 and server_of[h] == h:
            assert placement.host_instances(h, hosts, server_of, shards) == \
                placement.instances(shards)


def test_two_hosts_on_one_redis_split_the_flow():
    server_of = {"b": "a", "c": "a"}
    assert placement.host_instances("b", ["c", "b"], server_of, 1) == \
        ["kyle", "kenny", "executor"]
    assert placement.host_instances("c", ["c", "b"], server_of, 1) == ["joey", "hrm"]
    assert placement.pipeline("c", ["b", "c"], server_of, 2) == {
        "kyle": "b", "joey": "c", "joey-1": "b", "kenny": "c", "hrm": "b", "executor": "c"}


def test_a_host_outside_ark_agents_runs_none():
    assert placement.host_instances("x", ["a"], {"a": "a"}, 1) == []
    assert placement.pipeline("x", ["a"], {"a": "a"}, 1) == {}


@given(st.one_of(st.integers(max_value=0), st.integers(min_value=65), st.booleans(),
                 st.text(max_size=3), st.none(), st.floats()))
def test_a_bad_shard_count_is_refused_naming_the_variable(shards):
    with pytest.raises(placement.PlacementError, match="ark_runtime_joey_shards"):
        placement.instances(shards)


def test_instance_names_map_back_to_agent_and_shard():
    assert [placement.agent_of(i) for i in placement.instances(3)] == [
        "kyle", "joey", "joey", "joey", "kenny", "hrm", "executor"]
    assert [placement.shard_of(i) for i in ("joey", "joey-1", "joey-12")] == [0, 1, 12]


def _filter():
    path = REPO_ROOT / "plugins" / "filter" / "ark_placement.py"
    spec = importlib.util.spec_from_file_location("ark_placement_filter", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()["ark_agent_placement"]


@given(fleets())
def test_the_roles_filter_agrees_with_the_placement(fleet):
    hosts, redis_hosts, shards = fleet
    groups = {"ark_agents": hosts, "ark_redis": redis_hosts}
    hostvars = {h: {} for h in {*hosts, *redis_hosts}}
    server_of = servers(hosts, redis_hosts)
    for h in hosts:
        assert _filter()(hostvars, h, groups, str(shards)) == \
            placement.host_instances(h, hosts, server_of, shards)


def test_the_filter_honours_an_inventorys_redis_server_and_names_bad_shards():
    groups = {"ark_agents": ["b", "c", "d"], "ark_redis": ["a", "z"]}
    hostvars = {"a": {}, "z": {}, "b": {}, "c": {"ark_runtime_redis_server": "z"},
                "d": {"ark_runtime_redis_server": "z"}}
    ark_agent_placement = _filter()
    assert ark_agent_placement(hostvars, "b", groups, 1) == placement.instances(1)
    assert ark_agent_placement(hostvars, "c", groups, 1) == ["kyle", "kenny", "executor"]
    with pytest.raises(AnsibleFilterError, match="ark_runtime_joey_shards"):
        ark_agent_placement(hostvars, "b", groups, 0)


@pytest.mark.parametrize("setting,remote,on", [
    ("auto", [], False), ("auto", ["ark-2"], True), ("true", [], True), (True, [], True),
    ("false", ["ark-2"], False), (False, ["ark-2"], False), ("AUTO", ["ark-2"], True),
])
def test_redis_tls_follows_the_setting_and_the_remote_clients(setting, remote, on):
    """Issue #19 §4: both roles ask this one rule (plugins/filter/ark_placement.py)."""
    assert placement.redis_tls_on(setting, remote) is on


def test_a_bad_tls_setting_is_refused_naming_the_variable():
    with pytest.raises(placement.PlacementError, match="ark_redis_tls"):
        placement.redis_tls_on("sometimes", [])


def test_the_filter_turns_tls_on_for_a_split_fleet_only():
    from plugins.filter.ark_placement import ark_redis_tls_on

    split = {"ark": ["r", "a"], "ark_redis": ["r"], "ark_agents": ["a"]}
    alone = {"ark": ["r"], "ark_redis": ["r"], "ark_agents": ["r"]}
    hostvars = {"r": {}, "a": {}}
    assert ark_redis_tls_on(hostvars, "r", split, "auto") is True
    assert ark_redis_tls_on(hostvars, "r", alone, "auto") is False
    assert ark_redis_tls_on(hostvars, "", split, "true") is False  # no Redis at all
