"""Issue 20 §3: the rolling deploy's batching, gate and rollback orchestration.

The steps that touch hosts (ansible-playbook, testinfra, `ark config` over SSH) are replaced
by recording fakes here: no host can run in a unit test. Everything else is the real code,
including the audit records (written to a temporary inventory's audit log). The lab tests
(tests/e2e/test_rolling_upgrade.py) run the real steps."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ark_ops.errors import OpsError
from ark_ops.fleet.audit import audit_action, state_dir
from ark_ops.rollout.gate import GateResult, entry_key, wait_for_fresh_decision
from ark_ops.rollout.run import RollSteps, plan_batches, run_roll
from ark_runtime.host.audit.chain import iter_records, verify_dir

pytestmark = pytest.mark.requirement("GOV_02")

HOSTS = ["h1", "h2", "h3", "h4", "h5", "h6"]


# --- batches -------------------------------------------------------------------------------


@given(st.lists(st.text("abcdefgh0123456789-", min_size=1, max_size=6), unique=True,
                max_size=30), st.integers(min_value=1, max_value=40))
def test_canary_alone_then_batches_of_n_every_host_once_in_order(hosts, serial) -> None:
    batches = plan_batches(hosts, serial)
    assert [h for b in batches for h in b] == hosts
    if hosts:
        assert batches[0] == hosts[:1]
        assert all(1 <= len(b) <= serial for b in batches[1:])
        assert all(len(b) == serial for b in batches[1:-1])


@pytest.mark.parametrize("serial", [0, -1, True, 1.5, "2"])
def test_a_bad_serial_is_refused_naming_the_option(serial) -> None:
    with pytest.raises(OpsError, match="--serial must be a whole number"):
        plan_batches(HOSTS, serial)


def test_the_named_canary_goes_first_alone() -> None:
    assert plan_batches(HOSTS, 3, canary="h4") == [["h4"], ["h1", "h2", "h3"], ["h5", "h6"]]
    with pytest.raises(OpsError, match="--canary 'h9' is not one of the hosts"):
        plan_batches(HOSTS, 3, canary="h9")


def test_a_host_twice_is_refused() -> None:
    with pytest.raises(OpsError, match="twice in the roll: h2"):
        plan_batches(["h1", "h2", "h2"], 2)


# --- orchestration --------------------------------------------------------------------------


class Fleet:
    """Recording fakes of the host steps: which release each host runs, the config version
    each host is at, and what happened in which order."""

    def __init__(self, failing_gate: set[str] = frozenset(), failing_deploy=frozenset(),
                 no_history=frozenset()) -> None:
        self.release = dict.fromkeys(HOSTS, "old")
        self.version = {h: (None if h in no_history else 7) for h in HOSTS}
        self.failing_gate, self.failing_deploy = failing_gate, failing_deploy
        self.events: list[tuple] = []

    def deploy(self, batch: list[str], identity) -> None:
        assert identity.correlation_id  # the batch's record reaches the hosts' records
        self.events.append(("deploy", tuple(batch)))
        for h in batch:
            self.release[h] = "new"
            self.version[h] = (self.version[h] or 0) + 1
        if self.failing_deploy & set(batch):
            raise OpsError("site.yml failed (ansible-playbook exit 2)")

    def gate(self, host: str) -> GateResult:
        self.events.append(("gate", host))
        if host in self.failing_gate:
            return GateResult(host, False, "no fresh decision within 60s")
        return GateResult(host, True, "fresh decision after 1.0s, compliance checks passed")

    def heads(self, batch: list[str]) -> dict[str, int | None]:
        return {h: self.version[h] for h in batch}

    def rollback(self, host: str, to: int) -> str:
        self.events.append(("rollback", host, to))
        self.release[host] = "old"
        self.version[host] += 1
        return "ROLLED BACK"

    def steps(self) -> RollSteps:
        return RollSteps(self.deploy, self.gate, self.heads, self.rollback)


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ARK_ACTOR", "carol")
    (tmp_path / "prod").mkdir()
    return str(tmp_path / "prod" / "hosts.yml")  # no hosts file: records stay on this node


def roll(fleet: Fleet, inv: str, serial: int = 2):
    batches = plan_batches(HOSTS, serial)
    with audit_action("deploy.roll", {"serial": serial}, inv) as rec:
        report = run_roll(batches, fleet.steps(), inv, rec, log=lambda *_: None)
    return report


def records(inv: str) -> list[dict]:
    return [r for _f, r in iter_records(state_dir(inv))]


def test_every_batch_gated_before_the_next_starts(inv: str) -> None:
    fleet = Fleet()
    report = roll(fleet, inv)
    assert report.ok and report.done == HOSTS
    assert fleet.events == [("deploy", ("h1",)), ("gate", "h1"),
                            ("deploy", ("h2", "h3")), ("gate", "h2"), ("gate", "h3"),
                            ("deploy", ("h4", "h5")), ("gate", "h4"), ("gate", "h5"),
                            ("deploy", ("h6",)), ("gate", "h6")]
    assert set(fleet.release.values()) == {"new"}
    done = [r for r in records(inv) if r["result"] != "started"]
    assert [r["action"] for r in done] == ["deploy"] * 4 + ["deploy.roll"]
    assert all(r["result"] == "ok" for r in done)
    assert verify_dir(state_dir(inv)).ok


def test_a_failed_canary_stops_the_roll_and_is_rolled_back(inv: str) -> None:
    fleet = Fleet(failing_gate={"h1"})
    report = roll(fleet, inv)
    assert not report.ok and report.failed_batch == 0
    assert fleet.events == [("deploy", ("h1",)), ("gate", "h1"), ("rollback", "h1", 7)]
    assert fleet.release == dict.fromkeys(HOSTS, "old")
    assert report.untouched == HOSTS[1:]
    assert "no fresh decision" in report.why
    # (The real rollback step records itself as config.rollback: ark_ops.fleet.config_history.)
    done = [r for r in records(inv) if r["result"] != "started"]
    assert [(r["action"], r["result"]) for r in done] == [
        ("deploy", "failed"), ("deploy.roll", "failed")]
    batch_rec, roll_rec = done
    assert "h1: failed (gate: no fresh decision within 60s)" in batch_rec["detail"]
    assert "stopped at canary (h1)" in roll_rec["detail"]
    assert "h1: failed (gate failed: h1: no fresh decision within 60s; rollback: ROLLED BACK)" \
        in roll_rec["detail"]
    assert "untouched: h2, h3, h4, h5, h6" in roll_rec["detail"]
    assert batch_rec["correlation_id"] != roll_rec["correlation_id"]


def test_a_failed_middle_batch_rolls_back_only_that_batch(inv: str) -> None:
    fleet = Fleet(failing_gate={"h5"})
    report = roll(fleet, inv)
    assert report.failed_batch == 2 and report.done == ["h1", "h2", "h3"]
    # Both hosts of the batch go back, also the one whose own gate passed.
    assert [e for e in fleet.events if e[0] == "rollback"] == [("rollback", "h4", 7),
                                                                ("rollback", "h5", 7)]
    assert fleet.release == {"h1": "new", "h2": "new", "h3": "new", "h4": "old",
                             "h5": "old", "h6": "old"}
    assert ("deploy", ("h6",)) not in fleet.events
    assert report.untouched == ["h6"]


def test_a_failed_playbook_is_a_failed_batch(inv: str) -> None:
    fleet = Fleet(failing_deploy={"h2"})
    report = roll(fleet, inv)
    assert report.failed_batch == 1 and "playbook failed" in report.why
    assert ("gate", "h2") not in fleet.events
    assert fleet.release["h2"] == fleet.release["h3"] == "old"


def test_a_host_without_history_is_reported_not_rolled_back(inv: str) -> None:
    fleet = Fleet(failing_gate={"h1"}, no_history={"h1"})
    report = roll(fleet, inv)
    assert "NOT rolled back" in report.rolled_back["h1"]
    assert not [e for e in fleet.events if e[0] == "rollback"]


def test_a_failed_rollback_is_reported_and_audited(inv: str) -> None:
    fleet = Fleet(failing_gate={"h1"})

    def broken(host: str, to: int) -> str:
        raise OpsError("the venv of that version is gone")

    batches = plan_batches(HOSTS, 2)
    steps = fleet.steps()
    steps.rollback = broken
    with audit_action("deploy.roll", {}, inv) as rec:
        report = run_roll(batches, steps, inv, rec, log=lambda *_: None)
    assert report.rolled_back["h1"].startswith("FAILED: the venv of that version is gone")
    roll_rec = [r for r in records(inv) if r["action"] == "deploy.roll"][-1]
    assert "rollback: FAILED: the venv of that version is gone" in roll_rec["detail"]


# --- decisions still flowing ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def reader(ids: list[str | Exception]):
    it = iter(ids)

    def newest() -> str:
        value = next(it, ids[-1])
        if isinstance(value, Exception):
            raise value
        return value
    return newest


def test_a_newer_decision_passes_with_the_time_waited() -> None:
    clock = Clock()
    ok, waited = wait_for_fresh_decision(reader(["5-0", "5-0", "5-1"]), 30,
                                         clock=clock.now, sleep=clock.sleep)
    assert ok and waited == 2.0


def test_no_newer_decision_within_the_bound_fails() -> None:
    clock = Clock()
    ok, waited = wait_for_fresh_decision(reader(["9-0"]), 10, clock=clock.now,
                                         sleep=clock.sleep)
    assert not ok and waited == 10 and clock.t == 10


def test_an_unreadable_pipeline_is_not_flowing_until_it_answers() -> None:
    clock = Clock()
    ok, _ = wait_for_fresh_decision(reader([ConnectionError("refused")] * 3 + ["1-0", "2-0"]),
                                    30, clock=clock.now, sleep=clock.sleep)
    assert ok and clock.t == 4.0
    clock = Clock()
    ok, _ = wait_for_fresh_decision(reader([ConnectionError("refused")]), 5, clock=clock.now,
                                    sleep=clock.sleep)
    assert not ok


def test_an_empty_stream_then_a_first_decision_passes() -> None:
    clock = Clock()
    assert wait_for_fresh_decision(reader(["0-0", "17-3"]), 5, clock=clock.now,
                                   sleep=clock.sleep)[0]


@given(st.one_of(st.text(max_size=30), st.sampled_from(["²-1", "1-²", "-1", "1--1", " 5-0 "])))
def test_entry_ids_are_parsed_or_refused_by_name(text) -> None:
    try:
        ms, seq = entry_key(text)
    except OpsError as exc:
        assert "not a stream entry id" in str(exc)
    else:
        assert ms >= 0 and seq >= 0
