"""AGENT_01/AGENT_02: invalid, expired, misrouted and poison messages end in the dead-letter
stream with a reason, and never block the messages behind them."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from conftest import REPO, Lab, wait_for
from helpers import dead, envelopes, pending, write_feed

from ark_runtime.agents.consumer import ConsumerAgent
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.errors import recent
from ark_runtime.bus.streams import BusSettings, Inbox, connect, failures_key, inbox
from ark_runtime.config import RedisSettings
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector


def a_pattern_envelope(**overrides) -> Envelope:
    detector = PatternDetector()
    for bar in SyntheticAdapter(["AAPL"], seed=0, bars=400):
        for pattern in detector.update(bar):
            env = Envelope.new("pattern.detected", pattern, from_agent="joey", to_agent="kenny")
            return env.model_copy(update=overrides) if overrides else env
    raise AssertionError("the synthetic feed produced no pattern")


@pytest.mark.requirement("AGENT_01")
@pytest.mark.requirement("TEST_01")
def test_invalid_input_reaches_dead_letter_with_reason(lab: Lab, r, tmp_path) -> None:
    # 1. Bad rows in Kyle's feed: dead-lettered with the validator's reason, good rows flow.
    bars = list(SyntheticAdapter(["AAPL"], seed=1, bars=5))
    feed = write_feed(tmp_path / "feeds" / "bad.jsonl", bars, bad_lines={
        1: json.dumps({**bars[0].model_dump(mode="json"), "symbol": "aapl; rm -rf"}),
        3: "{not json",
        4: json.dumps({**bars[1].model_dump(mode="json"), "low": -1}),
    })
    lab.start("kyle", ARK_FEED="replay", ARK_FEED_PATH=str(feed))
    wait_for(lambda: len(dead(r)) >= 3 and r.xlen(inbox("joey")) >= 5, what="feed processed")
    reasons = [d["reason"] for d in dead(r)]
    assert any("symbol" in x and "not allowed" in x for x in reasons), reasons
    assert any("invalid JSON" in x for x in reasons), reasons
    assert any("low" in x for x in reasons), reasons
    assert all(json.loads(d["original"])["text"] for d in dead(r))
    assert r.xlen(inbox("joey")) == 5

    # 2. Junk written straight into Kenny's inbox.
    good = a_pattern_envelope()
    stale = a_pattern_envelope(timestamp=datetime.now(UTC) - timedelta(hours=2), ttl=60)
    misrouted = a_pattern_envelope(to_agent="hrm")
    bad_payload = json.loads(good.to_fields()["envelope"])
    bad_payload["payload"]["confidence"] = 7
    unknown_type = json.loads(good.to_fields()["envelope"])
    unknown_type["type"] = "market.crash"
    k = inbox("kenny")
    r.xadd(k, {"hello": "world"})
    r.xadd(k, {"envelope": "{oops"})
    r.xadd(k, {"envelope": json.dumps(bad_payload)})
    r.xadd(k, {"envelope": json.dumps(unknown_type)})
    r.xadd(k, stale.to_fields())
    r.xadd(k, misrouted.to_fields())
    r.xadd(k, good.to_fields())
    lab.start("kenny")
    wait_for(lambda: len(dead(r)) >= 9, what="six more dead letters")
    wait_for(lambda: r.xlen(inbox("hrm")) == 1, what="the good pattern to become a plan")
    kenny_dead = [d for d in dead(r) if d["agent"] == "kenny"]
    reasons = [d["reason"] for d in kenny_dead]
    assert "no 'envelope' field" in reasons[0]
    assert "not JSON" in reasons[1]
    assert "payload is not a valid pattern.detected" in reasons[2] and "confidence" in reasons[2]
    assert "unregistered message type 'market.crash'" in reasons[3]
    assert reasons[4].startswith("expired")
    assert reasons[5].startswith("misrouted")
    # The original entry is kept verbatim, so nothing is lost and it can be replayed.
    assert json.loads(kenny_dead[0]["original"]) == {"hello": "world"}
    assert kenny_dead[4]["correlation_id"] == stale.correlation_id
    assert pending(r, "kenny") == 0
    plan = envelopes(r, inbox("hrm"))[0]
    assert plan.correlation_id == good.correlation_id and plan.causation_id == good.message_id
    severities = {e.payload["severity"] for e in recent(r, 50) if e.type == "error.raised"}
    assert "warning" in severities
    shown = subprocess.run([sys.executable, "-m", "ark_runtime.cli", "dead", "-n", "50"],
                           env=lab.env(), cwd=REPO, capture_output=True, text=True, timeout=20)
    assert shown.returncode == 0
    listed = [json.loads(x) for x in shown.stdout.splitlines()]
    assert [x["reason"] for x in listed] == [d["reason"] for d in dead(r)]


class Failing(ConsumerAgent):
    """A consumer whose handler always fails: the poison-message path, in-process."""

    name = "kenny"
    accepts = ("pattern.detected",)
    calls = 0

    def handle(self, envelope):
        Failing.calls += 1
        raise RuntimeError("boom: plan service unavailable")


@pytest.mark.requirement("AGENT_02")
def test_poison_message_dead_lettered_after_max_deliveries(r, redis_server) -> None:
    settings = BusSettings(max_deliveries=3, claim_min_idle_ms=50, claim_every_s=0.01,
                           block_ms=20)
    agent = Failing(env={})
    agent.settings = settings
    agent.r = connect(RedisSettings(port=redis_server.port, password=redis_server.password))
    from ark_runtime.bus.errors import ErrorBus

    agent.errors = ErrorBus(agent.r, "kenny")
    agent.setup()
    poison = a_pattern_envelope()
    r.xadd(inbox("kenny"), poison.to_fields())
    # Each pass: read or reclaim (XAUTOCLAIM after min-idle), fail, stay pending.
    wait_for(lambda: agent.step() or dead(r), 15, interval=0.06, what="dead letter")
    entry = dead(r)[0]
    assert Failing.calls == settings.max_deliveries
    assert entry["reason"].startswith("delivered 4 times (max 3)")
    assert "RuntimeError: boom" in entry["reason"]
    assert int(entry["deliveries"]) == 4
    assert pending(r, "kenny") == 0
    assert not r.hgetall(failures_key("kenny"))  # bookkeeping cleaned up with the ack
    errors = [e.payload for e in recent(r, 50) if e.type == "error.raised"]
    assert sum(e["error"] == "RuntimeError" for e in errors) == 3


@pytest.mark.requirement("AGENT_01")
def test_inbox_trim_never_drops_unacked(r, redis_server) -> None:
    client = connect(RedisSettings(port=redis_server.port, password=redis_server.password))
    box = Inbox(client, "kenny", "kenny@a", BusSettings(batch=10))
    box.ensure_group()
    for _ in range(30):
        r.xadd(inbox("kenny"), a_pattern_envelope().to_fields())
    got = box.read(block_ms=10)  # 10 delivered, none acked
    for d in got[5:]:
        box.ack(d)
    box.trim()
    # Everything from the oldest unacked entry on is still there.
    assert r.xlen(inbox("kenny")) == 30
    for d in got[:5]:
        box.ack(d)
    box.trim()
    assert r.xlen(inbox("kenny")) == 21  # the 20 unread plus the last delivered one


@pytest.mark.requirement("AGENT_01")
def test_two_consumers_cannot_both_commit_one_message(r, redis_server) -> None:
    def make(name: str) -> Inbox:
        client = connect(RedisSettings(port=redis_server.port, password=redis_server.password))
        return Inbox(client, "kenny", name, BusSettings(claim_min_idle_ms=1))

    a, b = make("kenny@a"), make("kenny@b")
    a.ensure_group()
    src = a_pattern_envelope()
    r.xadd(inbox("kenny"), src.to_fields())
    held_by_a = a.read(block_ms=10)[0]
    # a looks dead, so b takes the message over, while a is in fact still working on it.
    held_by_b = wait_for(lambda: b.reclaim(), what="b to reclaim the idle message")[0]
    held_by_a.envelope = held_by_b.envelope = Envelope.from_fields(held_by_a.fields)
    assert b.commit(held_by_b, [(inbox("hrm"), src)], [["SET", "ark:test:effect", "1"]])
    assert not a.commit(held_by_a, [(inbox("hrm"), src)], [["INCR", "ark:test:effect"]])
    assert r.xlen(inbox("hrm")) == 1 and r.get("ark:test:effect") == "1"
    assert pending(r, "kenny") == 0
