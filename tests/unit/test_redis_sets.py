"""Issue #20: which ark_redis hosts are primaries and which replicas (`ark_redis_replica_of`),
where a pipeline's clients point, and the preflight that refuses a Redis set that cannot
fail over by itself, in one sentence."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ark_ops import placement
from ark_ops.placement import PlacementError
from ark_runtime.settings import load

names = st.from_regex(r"[a-z][a-z0-9-]{0,14}", fullmatch=True)


@st.composite
def fleets(draw):
    """ark_redis hosts, some replicas of a primary, plus agent-only hosts."""
    hosts = draw(st.lists(names, min_size=1, max_size=8, unique=True))
    primaries = hosts[: draw(st.integers(1, len(hosts)))]
    replica_of = {h: draw(st.sampled_from(primaries)) for h in hosts if h not in primaries}
    agents = draw(st.lists(names.filter(lambda n: n not in hosts), max_size=4, unique=True))
    return hosts, primaries, replica_of, agents


@given(fleets())
def test_every_replica_is_under_its_primary_and_no_client_points_at_a_replica(fleet) -> None:
    hosts, primaries, replica_of, agents = fleet
    sets = placement.redis_sets(hosts, replica_of)
    assert sorted(sets) == sorted(primaries)
    assert sorted(r for rs in sets.values() for r in rs) == sorted(replica_of)
    for replica, primary in replica_of.items():
        assert replica in sets[primary]
    for host in [*hosts, *agents]:
        server = placement.redis_server(host, hosts, None, replica_of)
        assert server in primaries
        assert server == (host if host in primaries else primaries[0])


@given(st.lists(names, min_size=3, max_size=8, unique=True),
       st.sampled_from(["self", "unknown", "chain"]))
def test_a_replica_of_nothing_itself_or_another_replica_is_refused_naming_it(hosts, how) -> None:
    primary, other, victim = hosts[0], hosts[1], hosts[2]
    replica_of = dict.fromkeys(hosts[1:], primary)
    replica_of[victim] = {"self": victim, "unknown": "not-in-the-group", "chain": other}[how]
    with pytest.raises(PlacementError, match=f"ark_redis_replica_of on {re.escape(victim)} "):
        placement.redis_sets(hosts, replica_of)


def test_without_replicas_the_old_rule_holds() -> None:
    assert placement.redis_server("b", ["a", "c"]) == "a"
    assert placement.redis_server("c", ["a", "c"]) == "c"
    assert placement.redis_server("x", []) == ""
    assert placement.redis_server("x", ["a"], "c") == "c"


ADDR = {"h1": "10.0.0.1", "h2": "10.0.0.2", "h3": "10.0.0.3", "h4": "10.0.0.3"}


@pytest.mark.parametrize(("replicas", "sentinels", "why"), [
    ([], [], None),
    (["h2"], ["h1", "h2", "h3"], None),
    (["h2"], ["h1", "h2"], "2 sentinel(s) in ark_sentinel: a failover needs at least 3"),
    (["h2"], ["h1", "h3", "h4"], "run on 2 machine(s)"),
    (["h5"], ["h1", "h2", "h3"], None),
])
def test_a_set_that_cannot_fail_over_is_refused_in_one_sentence(replicas, sentinels, why) -> None:
    got = placement.failover_problem("h1", replicas, sentinels, ADDR)
    if why is None:
        assert got is None
    else:
        assert why in got and got.count(". ") == 0, got


def test_replicas_on_the_primarys_own_machine_are_refused() -> None:
    got = placement.failover_problem("h3", ["h4"], ["h1", "h2", "h3"], ADDR)
    assert got is not None and "same machine" in got


@given(names)
def test_each_primary_has_a_master_name_the_runtime_accepts(primary) -> None:
    name = placement.sentinel_master(primary)
    assert load({"ARK_REDIS_SENTINEL_MASTER": name}).redis_sentinel_master == name


@given(st.integers(1, 99))
def test_the_quorum_is_a_majority(n) -> None:
    q = placement.sentinel_quorum(n)
    assert q > n / 2 and q - 1 <= n / 2


MEMBERS = ["h1", "h2", "h3"]
AT = {"h1": "10.0.0.1", "h2": "10.0.0.2", "h3": "10.0.0.3"}


@given(st.lists(st.sampled_from(["", "10.0.0.1", "10.0.0.2", "10.0.0.3"]), min_size=3,
                max_size=3))
def test_a_deploy_follows_the_sentinels_majority_or_refuses(answers) -> None:
    """Issue #20: the primary a deploy configures is the one a majority of the 3 Sentinels
    names; with no answer at all (a first deploy) the inventory's; otherwise refused, in one
    sentence: a deploy never demotes the primary the clients use."""
    named = [a for a in answers if a]
    top = max(set(named), key=named.count) if named else None
    if not named:
        assert placement.live_primary("h1", answers, 3, AT, MEMBERS) == "h1"
    elif named.count(top) >= 2:
        got = placement.live_primary("h1", answers, 3, AT, MEMBERS)
        assert AT[got] == top
    else:
        with pytest.raises(PlacementError, match="do not agree on h1's primary"):
            placement.live_primary("h1", answers, 3, AT, MEMBERS)


def test_a_primary_outside_the_set_is_refused() -> None:
    with pytest.raises(PlacementError, match="no member's address"):
        placement.live_primary("h1", ["10.9.9.9", "10.9.9.9", ""], 3, AT, MEMBERS)


def _filters():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "filter"))
    import ark_placement
    return ark_placement


@pytest.mark.requirement("INFRA_01")
@pytest.mark.parametrize(("sentinels", "why"), [
    (["a", "b", "c"], None),
    (["a", "b"], "2 sentinel(s) in ark_sentinel"),
    ([], "0 sentinel(s) in ark_sentinel"),
])
def test_the_role_preflight_refuses_a_set_that_cannot_fail_over(sentinels, why) -> None:
    """What roles/ark_redis/tasks/preflight.yml asserts, from the inventory's own shape."""
    f = _filters()
    hostvars = {"a": {"ansible_host": "10.0.0.1"},
                "b": {"ansible_host": "10.0.0.2", "ark_redis_replica_of": "a"},
                "c": {"ansible_host": "10.0.0.3", "ark_redis_replica_of": "a"}}
    groups = {"ark": ["a", "b", "c"], "ark_redis": ["a", "b", "c"], "ark_sentinel": sentinels}
    problems = f.ark_redis_failover_problems(hostvars, groups)
    assert problems == [] if why is None else (len(problems) == 1 and why in problems[0])
    # A fleet without replicas needs no Sentinel at all.
    alone = {h: {"ansible_host": v["ansible_host"]} for h, v in hostvars.items()}
    assert f.ark_redis_failover_problems(alone, {**groups, "ark_sentinel": []}) == []
