"""`invoke config.rollback --to N` over several hosts (GOV_02): versions are numbered per
host, so N is rolled back to everywhere only when it is the same deploy on every host."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ark_ops.fleet.config_history import meaning_problem


def row(version: int, corr: str | None = None, commit: str = "c1", lock: str = "l1") -> dict:
    return {"version": version, "correlation_id": corr, "commit": commit,
            "lock_sha256": lock, "created_at": "2026-12-06T08:00:00Z", "who": "ops",
            "reason": "deploy"}


def test_the_same_deploy_on_every_host_goes_ahead():
    same = {"a": [row(10, "d9"), row(11, "d10")], "b": [row(10, "d9"), row(11, "d10")]}
    assert meaning_problem(11, same) is None


def test_a_number_that_is_another_deploy_on_one_host_is_refused_naming_both():
    # b joined later: its 11 is the deploy that was a's 12.
    fleet = {"a": [row(11, "d10"), row(12, "d11")], "b": [row(10, "d10"), row(11, "d11")]}
    problem = meaning_problem(11, fleet)
    assert problem and "not the same deploy" in problem and "--limit" in problem
    assert "a: " in problem and "b: " in problem


def test_a_host_without_that_version_is_refused():
    problem = meaning_problem(3, {"a": [row(3, "d3")], "b": [row(1, "d1")]})
    assert problem and "b: no such version" in problem


def test_without_correlation_ids_commit_and_lock_decide():
    assert meaning_problem(2, {"a": [row(2, "none")], "b": [row(2, None)]}) is None
    assert meaning_problem(2, {"a": [row(2, "none", commit="c1")],
                               "b": [row(2, "none", commit="c2")]}) is not None


def test_one_host_needs_only_its_version():
    assert meaning_problem(4, {"a": [row(4, "x")]}) is None
    assert meaning_problem(5, {"a": [row(4, "x")]}) is not None


@given(st.dictionaries(st.sampled_from("abcd"),
                       st.lists(st.tuples(st.integers(1, 4), st.sampled_from(["d1", "d2"])),
                                max_size=4), min_size=1),
       st.integers(1, 4))
def test_allowed_only_when_every_host_has_n_as_one_and_the_same_deploy(fleet, n):
    versions = {h: [row(v, d) for v, d in rs] for h, rs in fleet.items()}
    firsts = {h: next((d for v, d in rs if v == n), None) for h, rs in fleet.items()}
    allowed = None not in firsts.values() and len(set(firsts.values())) == 1
    assert (meaning_problem(n, versions) is None) == allowed
