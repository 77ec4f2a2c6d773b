"""Issue #23 §3: a batch commit writes each single-field HSET once, with the value of the last
applied message that set it; the resulting state is the same as applying each message in
turn, messages already settled elsewhere still change nothing, and another command on the
same key sees the values written before it."""

from __future__ import annotations

from helpers import pending
from test_bus_faults import a_pattern_envelope

from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.streams import BusSettings, Inbox, connect, inbox
from ark_runtime.config import RedisSettings

STATE = "ark:test:state"


def _read(r, redis_server, n: int):
    box = Inbox(connect(RedisSettings(port=redis_server.port, password=redis_server.password)),
                "kenny", "kenny@a", BusSettings())
    box.ensure_group()
    for _ in range(n):
        r.xadd(inbox("kenny"), a_pattern_envelope().to_fields())
    got = box.read(block_ms=10)
    for d in got:
        d.envelope = Envelope.from_fields(d.fields)
    assert len(got) == n
    return box, got


def _hset_calls(r, fn):
    """fn()'s result and how many HSETs Redis ran meanwhile (a script's included)."""
    before = int(r.info("commandstats").get("cmdstat_hset", {}).get("calls", 0))
    out = fn()
    after = int(r.info("commandstats").get("cmdstat_hset", {}).get("calls", 0))
    return out, after - before


def test_last_value_of_each_field_is_written_once(r, redis_server) -> None:
    box, got = _read(r, redis_server, 4)
    commits = [(got[0], [], [["HSET", STATE, "AAPL", "a1"]]),
               (got[1], [], [["HSET", STATE, "MSFT", "m1"], ["HSET", STATE, "AAPL", "a2"]]),
               (got[2], [], [["HSET", STATE, "AAPL", "a3"]]),
               (got[3], [], [["HSET", STATE, "MSFT", "m2"]])]
    firsts, hsets = _hset_calls(r, lambda: box.commit_many(commits))
    assert firsts == [True] * 4
    assert r.hgetall(STATE) == {"AAPL": "a3", "MSFT": "m2"}
    assert hsets == 2  # one per field, not one per message
    assert pending(r, "kenny") == 0


def test_a_settled_message_writes_nothing_and_hides_no_earlier_value(r, redis_server) -> None:
    box, got = _read(r, redis_server, 3)
    box.ack(got[2])  # settled before this commit (another consumer, a lost reply)
    firsts = box.commit_many([(got[0], [], [["HSET", STATE, "AAPL", "a1"]]),
                              (got[1], [], [["HSET", STATE, "AAPL", "a2"]]),
                              (got[2], [], [["HSET", STATE, "AAPL", "stale"]])])
    assert firsts == [True, True, False]
    assert r.hget(STATE, "AAPL") == "a2"


def test_other_commands_on_the_key_see_the_earlier_writes(r, redis_server) -> None:
    box, got = _read(r, redis_server, 3)
    box.commit_many([(got[0], [], [["HSET", STATE, "AAPL", "a1"], ["HSET", STATE, "X", "1"]]),
                     (got[1], [], [["DEL", STATE]]),
                     (got[2], [], [["HSET", STATE, "MSFT", "m1"],
                                   ["HINCRBY", STATE, "X", "5"]])])
    # As in turn: the DEL removed a1 and X; X then counts from 0.
    assert r.hgetall(STATE) == {"MSFT": "m1", "X": "5"}


def test_multi_field_hset_and_outputs_still_run_in_order(r, redis_server) -> None:
    box, got = _read(r, redis_server, 2)
    out = a_pattern_envelope()
    box.commit_many([(got[0], [(inbox("hrm"), out)], [["HSET", STATE, "A", "1", "B", "2"]]),
                     (got[1], [], [["HSET", STATE, "A", "3"]])])
    assert r.hgetall(STATE) == {"A": "3", "B": "2"}
    assert r.xlen(inbox("hrm")) == 1
