"""`invoke redis.failover` on the control side (issue #20 §1): which Redis set it fails over
(--pipeline, or the only set with replicas; refused naming --pipeline otherwise), that it
asks from the first host of the set that answers and never from a second once the Sentinels
were asked, that no password is on a command line or in what it prints, and its audit record.
The host-side line itself runs against real Sentinels in
tests/integration/test_redis_sentinel_lines.py."""

from __future__ import annotations

import io
import shlex
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ark_ops.errors import RefusedError
from ark_ops.fleet import redis_failover, ssh
from ark_ops.fleet.audit import state_dir
from ark_ops.fleet.hostaccess import Become
from ark_ops.fleet.redis_sentinel import ASKED, UNSETTLED_EXIT
from ark_ops.fleet.ssh import FleetHost
from ark_runtime.host.audit.chain import iter_records

pytestmark = pytest.mark.requirement("AGENT_02")

SUDO = "sudo-password-never-shown"
MOVED = (f"{ASKED} 10.0.0.7:26379 to fail over ark-r1 (primary 10.0.0.1:6379)\n"
         "10.0.0.1:6379 -> 10.0.0.2:6379\n")


def _host(name: str, address: str, replica_of: str | None = None) -> FleetHost:
    return FleetHost(name, address, user="deploy", become=Become(enabled=True, password=SUDO),
                     vars={"ark_redis_replica_of": replica_of} if replica_of else {})


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """r1 with its replica r2, r3 alone; the inventory file does not exist, so the audit's
    host records reach no host."""
    monkeypatch.setenv("ARK_ACTOR", "carol")
    (tmp_path / "prod").mkdir()
    fleet = [_host("r1", "10.0.0.1"), _host("r2", "10.0.0.2", "r1"), _host("r3", "10.0.0.3")]
    monkeypatch.setattr(ssh, "inventory_hosts",
                        lambda inv, limit=None, group="ark": fleet)
    monkeypatch.setattr("ark_ops.inventories.resolve_inventory", lambda *a, **k: "inv")
    return str(tmp_path / "prod" / "hosts.yml")


class Runner:
    """A fake subprocess.run: answers by host address, records argv and stdin."""

    def __init__(self, **by_address: tuple[int, str, str]) -> None:
        self.by_address, self.calls = by_address, []

    def __call__(self, argv, **kw):
        self.calls.append((argv, kw))
        rc, out, err = self.by_address[argv[-2].split("@")[1]]
        return subprocess.CompletedProcess(argv, rc, out, err)


def _records(inv: str) -> list[dict]:
    return [r for _f, r in iter_records(state_dir(inv))]


def test_the_only_replicated_set_fails_over_from_its_primary(inv: str) -> None:
    runner = Runner(**{"10.0.0.1": (0, MOVED, "")})
    out = io.StringIO()
    assert redis_failover.run(inv, out=out, runner=runner) == 0
    assert out.getvalue().splitlines()[-1] == "10.0.0.1:6379 -> 10.0.0.2:6379"
    (argv, kw), = runner.calls
    assert argv[-2] == "deploy@10.0.0.1"
    assert all(SUDO not in word for word in argv)  # the become password on stdin only
    assert kw["input"] == f"{SUDO}\n"
    remote = shlex.split(argv[-1])[-1]  # sudo ... sh -c LINE
    assert "/etc/ark/env/infrastructure.env" in remote and "ARK_REDIS_SENTINELS" in remote
    assert '"$ARK_REDIS_SENTINEL_MASTER" != ark-r1 ]' in remote  # the set's own Sentinels
    assert "SENTINEL" in remote and "FAILOVER" in remote and "REDISCLI_AUTH=" in remote
    started, done = _records(inv)
    assert started["action"] == done["action"] == "redis.failover"
    assert done["args"]["pipeline"] == "r1" and done["result"] == "ok"
    assert "r1: ok" in done["detail"]


def test_an_unreachable_host_is_passed_over_before_the_sentinels_are_asked(inv: str) -> None:
    runner = Runner(**{"10.0.0.1": (255, "", f"[sudo] {SUDO}\nssh: connect to host 10.0.0.1 "
                                               "port 22: No route to host"),
                       "10.0.0.2": (0, MOVED, "")})
    out = io.StringIO()
    assert redis_failover.run(inv, "r1", out=out, runner=runner) == 0
    assert [c[0][-2] for c in runner.calls] == ["deploy@10.0.0.1", "deploy@10.0.0.2"]
    done = _records(inv)[-1]
    assert done["result"] == "ok" and "r2: ok" in done["detail"]


def test_once_asked_no_other_host_asks_again_and_a_failover_not_seen_is_exit_1(
        inv: str) -> None:
    runner = Runner(**{"10.0.0.1": (1, MOVED.splitlines()[0] + "\n",
                                    f"{SUDO}\nthe Sentinels still name 10.0.0.1:6379 60 s "
                                    "after the failover was asked"),
                       "10.0.0.2": (0, MOVED, "")})
    out, err = io.StringIO(), io.StringIO()
    assert redis_failover.run(inv, out=out, err=err, runner=runner) == 1
    assert len(runner.calls) == 1  # r2 never asked: that could move the primary twice
    assert "r1: the Sentinels still name 10.0.0.1:6379" in err.getvalue()
    assert SUDO not in out.getvalue() + err.getvalue()
    done = _records(inv)[-1]
    assert done["result"] == "failed" and "still name" in done["detail"]
    assert SUDO not in done["detail"]


def test_a_host_that_does_not_answer_in_time_is_not_followed_by_another(inv: str) -> None:
    def runner(argv, **kw):
        # The line may wait the timeout for the set to settle, then as long for the move.
        assert kw["timeout"] == 2 * 30 + redis_failover.SSH_SLACK_S
        raise subprocess.TimeoutExpired(argv, kw["timeout"])

    err = io.StringIO()
    assert redis_failover.run(inv, err=err, out=io.StringIO(), runner=runner, timeout=30) == 1
    assert err.getvalue() == f"r1: no answer within {2 * 30 + redis_failover.SSH_SLACK_S} s\n"
    assert _records(inv)[-1]["result"] == "failed"


def test_a_set_that_never_settled_is_not_asked_from_another_host(inv: str) -> None:
    """The set is the same set from every host: one that has not settled is said once."""
    runner = Runner(**{a: (UNSETTLED_EXIT, "", "Sentinel 10.0.0.2:26379 still sees a replica "
                                               "of ark-r1 that reports itself a primary")
                       for a in ("10.0.0.1", "10.0.0.2")})
    err = io.StringIO()
    assert redis_failover.run(inv, err=err, out=io.StringIO(), runner=runner) == 1
    assert len(runner.calls) == 1
    assert err.getvalue().startswith("r1: Sentinel 10.0.0.2:26379 still sees a replica")
    assert _records(inv)[-1]["result"] == "failed"


def test_no_host_of_the_set_answering_is_exit_1_naming_each(inv: str) -> None:
    runner = Runner(**{a: (3, "", "the env file names no ARK_REDIS_SENTINELS or "
                                  "ARK_REDIS_SENTINEL_MASTER: this host has no Sentinels")
                       for a in ("10.0.0.1", "10.0.0.2")})
    err = io.StringIO()
    assert redis_failover.run(inv, err=err, out=io.StringIO(), runner=runner) == 1
    assert err.getvalue().count("has no Sentinels") == 2
    done = _records(inv)[-1]
    assert done["result"] == "failed" and "r1: failed" in done["detail"]
    assert "r2: failed" in done["detail"]


SETS = {"r1": ["r2"], "r3": [], "r5": ["r6", "r7"]}


@pytest.mark.parametrize("pipeline, sets, says", [
    (None, SETS, "several Redis sets have replicas"),
    (None, {"r1": [], "r3": []}, "no Redis set of this inventory has replicas"),
    ("r9", SETS, "--pipeline 'r9' is not the primary"),
    ("r6", SETS, "it is a replica, give --pipeline r5"),
    ("r3", SETS, "--pipeline r3: its Redis has no replicas"),
])
def test_a_set_that_cannot_be_named_or_has_no_replica_is_refused(pipeline, sets, says) -> None:
    with pytest.raises(RefusedError, match="--pipeline") as caught:
        redis_failover.choose_set(sets, pipeline)
    assert says in str(caught.value)


def test_a_named_set_is_chosen_among_several() -> None:
    assert redis_failover.choose_set(SETS, "r5") == "r5"
    assert redis_failover.choose_set({"r1": ["r2"], "r3": []}, None) == "r1"


@given(st.text(max_size=300).filter(lambda s: s not in SETS))
def test_any_other_pipeline_name_is_refused_in_one_bounded_sentence(name: str) -> None:
    with pytest.raises(RefusedError) as caught:
        redis_failover.choose_set(SETS, name)
    message = str(caught.value)
    assert message.startswith("--pipeline ") and len(message) < 400 and "\n" not in message


def test_a_refused_pipeline_or_timeout_reaches_no_host_and_leaves_no_record(inv: str) -> None:
    runner = Runner()
    with pytest.raises(RefusedError, match="--pipeline"):
        redis_failover.run(inv, "nope", runner=runner)
    for bad in (0, -5, True, 2.5):
        with pytest.raises(RefusedError, match="--timeout"):
            redis_failover.run(inv, "r1", runner=runner, timeout=bad)
    assert runner.calls == [] and _records(inv) == []
