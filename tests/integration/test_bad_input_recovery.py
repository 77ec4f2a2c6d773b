"""Issue #7 section 4 with a real redis-server: an unparseable entry is dead-lettered (no crash
loop), a bad feed row does not stop Kyle, a failed commit loses no pattern, a wrong password
exits 78 at once."""

from __future__ import annotations

import json
import time

import pytest
import redis
from conftest import Lab, wait_for
from helpers import dead, envelopes, write_feed

from ark_runtime.agents.joey import WINDOW_KEY, Joey
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.streams import BusSettings, inbox
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector

LATE = "9999-12-31T23:59:59-14:00"
EARLY = "0001-01-01T00:00:00+14:00"
FAIL_EVERY = 7
BARS = list(SyntheticAdapter(["AAPL"], seed=0, bars=400))


def bar_fields(bar, **changes) -> dict[str, str]:
    env = Envelope.new("market.bar", bar, from_agent="kyle", to_agent="joey")
    data = json.loads(env.to_fields()["envelope"])
    data.update(changes)
    return {"envelope": json.dumps(data)}


@pytest.mark.requirement("AGENT_01")
def test_out_of_range_entry_is_dead_lettered_and_joey_keeps_running(lab: Lab, r) -> None:
    r.xadd(inbox("joey"), bar_fields(BARS[0], timestamp=LATE))
    r.xadd(inbox("joey"), bar_fields(BARS[1]))
    joey = lab.start("joey")
    wait_for(lambda: not r.xpending(inbox("joey"), "joey")["pending"]
             and r.exists(f"{WINDOW_KEY}{BARS[1].symbol}"), what="good bar committed")
    reasons = [d["reason"] for d in dead(r)]
    assert len(reasons) == 1 and "timestamp" in reasons[0], reasons
    assert joey.proc.poll() is None
    assert lab.stop(joey) == 0


@pytest.mark.requirement("AGENT_01")
def test_out_of_range_feed_row_is_dead_lettered_and_kyle_continues(lab: Lab, r, tmp_path) -> None:
    bars = BARS[:3]
    feed = write_feed(tmp_path / "feeds" / "edge.jsonl", bars,
                      bad_lines={1: json.dumps({**bars[0].model_dump(mode="json"), "ts": EARLY})})
    kyle = lab.start("kyle", ARK_FEED="replay", ARK_FEED_PATH=str(feed))
    wait_for(lambda: r.xlen(inbox("joey")) >= 3 and dead(r), what="feed processed")
    assert any("ts" in d["reason"] and "out of range" in d["reason"] for d in dead(r))
    assert kyle.proc.poll() is None
    assert lab.stop(kyle) == 0


def test_wrong_password_exits_78_at_once_without_the_password(lab: Lab, r) -> None:
    wrong = "not-the-password-" + "x" * 8
    started = time.monotonic()
    joey = lab.start("joey", wait=False, ARK_REDIS_PASSWORD=wrong)
    assert joey.proc.wait(20) == 78
    assert time.monotonic() - started < 10  # far below the 8 retries (~25 s) it used to take
    err = joey.stderr() + "".join(p.read_text() for p in
                                  (lab.root / "host1" / "log").glob("joey*.log"))
    assert "ARK_REDIS_PASSWORD" in err
    assert wrong not in err and lab.redis.password not in err


def expected_patterns() -> list[dict]:
    detector = PatternDetector(window=60)
    return [p.model_dump(mode="json") for bar in BARS for p in detector.update(bar)]


def in_process_joey(redis_server) -> Joey:
    joey = Joey(env={"ARK_CONSUMER_NAME": "joey@test"})
    # Small batches, so the 400 bars take many batch commits (and many injected failures).
    joey.settings = BusSettings(block_ms=10, claim_every_s=0.01, claim_min_idle_ms=1,
                                batch=8)
    joey.r = redis_server.client()
    joey.setup()
    return joey


@pytest.mark.requirement("AGENT_02")
@pytest.mark.parametrize("lost", ["before", "after", "partial"])
def test_failed_commit_loses_no_pattern(r, redis_server, lost: str) -> None:
    """Every 7th batch commit fails: before the scripts ran, after they all ran with the reply
    lost, or with the connection dropped half-way through the pipelined batch."""
    for bar in BARS:
        r.xadd(inbox("joey"), Envelope.new("market.bar", bar, from_agent="kyle",
                                           to_agent="joey").to_fields())
    joey = in_process_joey(redis_server)
    real_commit = joey.inbox.commit_many
    calls = {"n": 0}

    def flaky_commit(commits):
        calls["n"] += 1
        if FAIL_EVERY and calls["n"] % FAIL_EVERY == 0:
            if lost == "after":
                real_commit(commits)
            elif lost == "partial":
                real_commit(commits[: len(commits) // 2])
            raise redis.ConnectionError("connection dropped during commit")
        return real_commit(commits)

    joey.inbox.commit_many = flaky_commit  # type: ignore[method-assign]
    deadline = time.monotonic() + 60
    while _busy(r, joey):
        assert time.monotonic() < deadline, "joey did not drain its inbox"
        try:
            joey.step()
        except redis.ConnectionError:
            joey.recover()  # what Agent._loop does after a Redis error
    got = [e.payload for e in envelopes(r, inbox("kenny"))]
    assert calls["n"] > 7 * 3
    assert got == expected_patterns()
    assert not dead(r)


def _busy(r, joey: Joey) -> bool:
    info = r.xinfo_groups(inbox("joey"))[0]
    return bool(info["pending"] or info["lag"])


@pytest.mark.requirement("AGENT_04")
def test_hrm_with_a_non_mapping_rule_exits_78(lab: Lab, r, tmp_path) -> None:
    ruleset = tmp_path / "HRM_RULESET.yaml"
    ruleset.write_text("version: '1'\nstrict_mode: false\nrules: [null]\n", encoding="utf-8")
    hrm = lab.start("hrm", wait=False, ARK_HRM_RULESET=str(ruleset))
    assert hrm.proc.wait(20) == 78
    assert "Traceback" not in hrm.stderr()


def test_password_changed_while_running_exits_78(lab: Lab, r, redis_server) -> None:
    joey = lab.start("joey")
    new = redis_server.password + "-rotated"
    r.config_set("requirepass", new)
    try:
        r.client_kill_filter(_type="normal", skipme=True)  # the agent must reconnect
        assert joey.proc.wait(20) == 78
    finally:
        admin = redis.Redis(port=redis_server.port, password=new, decode_responses=True)
        admin.config_set("requirepass", redis_server.password)
    logs = "".join(p.read_text() for p in (lab.root / "host1" / "log").glob("joey*"))
    assert "ARK_REDIS_PASSWORD" in logs and new not in logs
