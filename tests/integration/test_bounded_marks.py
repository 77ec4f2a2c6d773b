"""Issue #19 (AGENT_01/AGENT_02): exactly-once no longer rests on long-lived marks. With the
marks gone (expired), a late second commit, a dead-lettering racing a commit and two
replays racing each other still have no second effect, on a real redis-server."""

from __future__ import annotations

import threading

import pytest
from conftest import wait_for
from helpers import dead, pending
from test_bus_faults import a_pattern_envelope

from ark_runtime.api.admin import _replay
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.streams import BusSettings, Delivery, Inbox, connect, done_key, inbox
from ark_runtime.config import RedisSettings


def _inbox(redis_server, name: str, **settings) -> Inbox:
    client = connect(RedisSettings(port=redis_server.port, password=redis_server.password))
    return Inbox(client, "kenny", name, BusSettings(claim_min_idle_ms=1, **settings))


def _held_by_two(r, redis_server) -> tuple[Inbox, Delivery, Inbox, Delivery, Envelope]:
    """One message delivered to consumer a, then reclaimed by b while a still holds it."""
    a, b = _inbox(redis_server, "kenny@a"), _inbox(redis_server, "kenny@b")
    a.ensure_group()
    src = a_pattern_envelope()
    r.xadd(inbox("kenny"), src.to_fields())
    held_by_a = a.read(block_ms=10)[0]
    held_by_b = wait_for(lambda: b.reclaim(), what="b to reclaim the idle message")[0]
    held_by_a.envelope = held_by_b.envelope = Envelope.from_fields(held_by_a.fields)
    return a, held_by_a, b, held_by_b, src


def _expire_marks(r) -> None:
    # What ARK_BUS_DEDUP_TTL_S does after its window, done now instead of waiting it out.
    for key in r.scan_iter("ark:done:*"):
        r.delete(key)


@pytest.mark.requirement("AGENT_01")
def test_a_late_commit_after_the_mark_expired_has_no_second_effect(r, redis_server) -> None:
    a, held_by_a, b, held_by_b, src = _held_by_two(r, redis_server)
    assert b.commit(held_by_b, [(inbox("hrm"), src)], [["INCR", "ark:test:effect"]])
    assert r.exists(done_key("kenny", src.message_id))
    _expire_marks(r)
    # a wakes up long after: no mark left, yet the entry is settled, so nothing happens.
    assert not a.commit(held_by_a, [(inbox("hrm"), src)], [["INCR", "ark:test:effect"]])
    assert r.xlen(inbox("hrm")) == 1 and r.get("ark:test:effect") == "1"
    assert pending(r, "kenny") == 0
    assert not r.exists(done_key("kenny", src.message_id))  # a refused commit sets no mark


@pytest.mark.requirement("AGENT_02")
def test_a_committed_message_never_also_becomes_a_dead_letter(r, redis_server) -> None:
    a, held_by_a, b, held_by_b, src = _held_by_two(r, redis_server)
    assert a.commit(held_by_a, [(inbox("hrm"), src)])
    _expire_marks(r)
    # b's copy has run out of deliveries meanwhile: dead-lettering it must not record it.
    assert b.dead_letter(held_by_b, "delivered 6 times (max 5)") == ""
    assert dead(r) == [] and r.xlen(inbox("hrm")) == 1


@pytest.mark.requirement("AGENT_02")
def test_a_dead_letter_and_a_late_commit_settle_once(r, redis_server) -> None:
    a, held_by_a, b, held_by_b, src = _held_by_two(r, redis_server)
    assert b.dead_letter(held_by_b, "delivered 6 times (max 5)")
    assert not a.commit(held_by_a, [(inbox("hrm"), src)])
    assert len(dead(r)) == 1 and r.xlen(inbox("hrm")) == 0


@pytest.mark.requirement("AGENT_02")
def test_racing_replays_queue_a_dead_letter_once_and_it_is_processed_once(
        r, redis_server) -> None:
    a, held_by_a, b, held_by_b, src = _held_by_two(r, redis_server)
    assert b.dead_letter(held_by_b, "delivered 6 times (max 5)")
    client = a.r
    results: list[str] = []
    start = threading.Barrier(4)

    def replay() -> None:
        start.wait()
        results.append(_replay(client, 100))

    threads = [threading.Thread(target=replay) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(x == "replayed 1, skipped 0" for x in results) == 1, results
    assert dead(r) == []
    # The replayed copy is a new entry: processed once, and a stale commit of it refused.
    fresh = _inbox(redis_server, "kenny@c")
    replayed = fresh.read(block_ms=10)
    assert [d.fields for d in replayed] == [src.to_fields()]
    replayed[0].envelope = src
    _expire_marks(r)
    assert fresh.commit(replayed[0], [(inbox("hrm"), src)])
    assert not fresh.commit(replayed[0], [(inbox("hrm"), src)])
    assert r.xlen(inbox("hrm")) == 1


@pytest.mark.requirement("AGENT_01")
def test_marks_expire_within_their_window(r, redis_server) -> None:
    box = _inbox(redis_server, "kenny@a", dedup_ttl_s=1)
    box.ensure_group()
    for _ in range(20):
        r.xadd(inbox("kenny"), a_pattern_envelope().to_fields())
    got = box.read(block_ms=10)
    for d in got:
        d.envelope = Envelope.from_fields(d.fields)
    assert all(box.commit_many([(d, [], []) for d in got]))
    assert sum(1 for _ in r.scan_iter("ark:done:*")) == 20
    assert all(0 < r.pttl(k) <= 1000 for k in r.scan_iter("ark:done:*"))
    wait_for(lambda: next(r.scan_iter("ark:done:*"), None) is None, 10,
             what="the marks to expire")
    assert pending(r, "kenny") == 0
