"""`invoke decommission` refuses before anything happens when a host that stays still needs
the leaving host's Redis, and when no host is named (ark_ops/fleet/decommission.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ark_ops.errors import OpsError
from ark_ops.fleet.decommission import decommission, inventory_groups, still_needed

SPLIT = {"ark": ["ark-1", "ark-2", "ark-3"], "ark_redis": ["ark-1"],
         "ark_api": ["ark-2"], "ark_agents": ["ark-2", "ark-3"]}


def test_an_agents_host_may_leave():
    assert still_needed(["ark-3"], SPLIT, {}) == []


def test_the_redis_host_others_use_may_not():
    [problem] = still_needed(["ark-1"], SPLIT, {})
    assert "ark-1 runs the Redis that ark-2, ark-3 still use" in problem


def test_it_may_leave_with_everyone_who_uses_it():
    assert still_needed(["ark-1", "ark-2", "ark-3"], SPLIT, {}) == []


def test_hosts_with_their_own_redis_leave_alone():
    everything = {"ark": ["a", "b"], "ark_redis": ["a", "b"], "ark_agents": ["a", "b"]}
    assert still_needed(["b"], everything, {}) == []
    assert still_needed(["b"], everything, {"a": "b"}) != []  # a was pointed at b's Redis


def test_groups_come_from_the_inventory(tmp_path: Path):
    example = Path(__file__).resolve().parents[2] / "inventory" / "example" / "hosts.yml"
    groups, overrides = inventory_groups(example)
    assert groups["ark_redis"] == ["ark-1"] and groups["ark_monitoring"] == ["ark-1"]
    assert overrides == {}
    assert still_needed(["ark-1"], groups, overrides)


def test_no_limit_is_refused():
    with pytest.raises(OpsError, match="needs --limit"):
        decommission(None, None)
