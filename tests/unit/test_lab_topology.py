"""`invoke lab.up --topology`: the lab inventory's groups, per topology (INFRA_01)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ark_ops import placement
from ark_ops.lab import inventory
from ark_ops.lab.config import LabHost, LabPaths
from ark_runtime.exitcodes import ExitCode


def groups_of(doc: dict) -> dict[str, set[str]]:
    children = doc["all"]["children"]
    found = {g: set(v["hosts"]) for g, v in children["ark"]["children"].items()}
    return {**found, "ark_monitoring": set(children["ark_monitoring"]["hosts"])}


def render(tmp_path, n: int, topology: str) -> dict:
    paths = LabPaths(state=tmp_path / "s", cache=tmp_path / "c", inventory=tmp_path / "i")
    return inventory.render(paths, [LabHost(i) for i in range(1, n + 1)], topology)


@pytest.mark.requirement("INFRA_01")
def test_split_puts_redis_and_monitoring_apart_from_api_and_agents(tmp_path):
    doc = render(tmp_path, 3, "split")
    assert groups_of(doc) == {
        "ark_redis": {"ark-lab-1"}, "ark_monitoring": {"ark-lab-1"},
        "ark_api": {"ark-lab-2"}, "ark_agents": {"ark-lab-2", "ark-lab-3"},
        "ark_sentinel": set(),
    }
    assert set(doc["all"]["children"]["ark"]["hosts"]) == {"ark-lab-1", "ark-lab-2", "ark-lab-3"}
    assert doc["all"]["vars"]["ark_lab_topology"] == "split"


@pytest.mark.requirement("INFRA_01")
def test_all_is_the_default_and_gives_every_host_everything(tmp_path):
    paths = LabPaths(state=tmp_path / "s", cache=tmp_path / "c", inventory=tmp_path / "i")
    doc = inventory.render(paths, [LabHost(1), LabHost(2)])
    groups = groups_of(doc)
    for group in ("ark_redis", "ark_api", "ark_agents"):
        assert groups[group] == {"ark-lab-1", "ark-lab-2"}
    assert groups["ark_monitoring"] == {"ark-lab-1"}
    assert groups["ark_sentinel"] == set()  # each host's Redis alone: nothing to fail over


@pytest.mark.requirement("INFRA_01")
def test_ha_is_split_plus_replicas_of_the_first_redis_and_a_sentinel_everywhere(tmp_path):
    doc = render(tmp_path, 3, "ha")
    hosts = {"ark-lab-1", "ark-lab-2", "ark-lab-3"}
    assert groups_of(doc) == {
        "ark_redis": hosts, "ark_sentinel": hosts, "ark_monitoring": {"ark-lab-1"},
        "ark_api": {"ark-lab-2"}, "ark_agents": {"ark-lab-2", "ark-lab-3"},
    }
    host_vars = doc["all"]["children"]["ark"]["hosts"]
    assert {h: v.get("ark_redis_replica_of") for h, v in host_vars.items()} == {
        "ark-lab-1": None, "ark-lab-2": "ark-lab-1", "ark-lab-3": "ark-lab-1"}
    # What the role's preflight asks of it: the set can fail over by itself.
    replica_of = {h: v.get("ark_redis_replica_of") for h, v in host_vars.items()}
    sets = placement.redis_sets(sorted(hosts), replica_of)
    address = {h: v["ansible_host"] for h, v in host_vars.items()}
    assert placement.failover_problem("ark-lab-1", sets["ark-lab-1"], sorted(hosts),
                                      address) is None


@given(n=st.integers(min_value=0, max_value=2))
def test_ha_needs_three_hosts_and_says_so(n):
    with pytest.raises(inventory.TopologyError, match="--topology ha needs --hosts 3"):
        inventory.placement([LabHost(i) for i in range(1, n + 1)], "ha")


@given(n=st.integers(min_value=2, max_value=8))
def test_split_places_every_group_on_some_host_and_keeps_redis_off_agent_hosts(n):
    placed = inventory.placement([LabHost(i) for i in range(1, n + 1)], "split")
    assert all(placed[g] for g in ("ark_redis", "ark_api", "ark_agents", "ark_monitoring"))
    assert not set(placed["ark_redis"]) & set(placed["ark_agents"])
    assert set().union(*placed.values()) == {LabHost(i).name for i in range(1, n + 1)}


@given(name=st.text(max_size=12).filter(lambda s: s not in inventory.TOPOLOGIES))
def test_an_unknown_topology_is_a_usage_error_naming_the_option(name):
    with pytest.raises(inventory.TopologyError, match="--topology") as err:
        inventory.placement([LabHost(1), LabHost(2)], name)
    assert err.value.exit_code == ExitCode.USAGE


def test_split_on_one_host_says_how_many_it_needs():
    with pytest.raises(inventory.TopologyError, match="--hosts 2 or more"):
        inventory.placement([LabHost(1)], "split")
