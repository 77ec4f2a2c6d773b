"""Issue #19 (AGENT_02/TEST_01): Redis comes back with OLDER state than the agents committed
(an RDB-only Redis restarted from its last snapshot, or from nothing). Kyle sees its cursor
behind what it emitted and replays the lost bars from the feed; Joey sees its group behind
what it committed and rebuilds its windows from Redis; HRM's store refuses plans it already
decided. The decisions equal the fault-free run: none lost, none twice, none made on a window
with a gap. A live feed, which cannot replay, stops the pipeline with a critical error naming
the gap instead."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import Lab, wait_for
from deployed_redis import DeployedRedis
from helpers import dead, drained, kyle_cursor, log_lines, store_decisions
from test_pipeline import SYMBOLS, expected_outcomes, outcomes

from ark_runtime.agents.kyle import Kyle
from ark_runtime.bus.errors import PAUSE_KEY, ErrorBus, recent
from ark_runtime.bus.streams import BusSettings, connect
from ark_runtime.config import RedisSettings

SEED, BARS = 11, 250
TOTAL = BARS * len(SYMBOLS)


@pytest.fixture
def rdb_only(tmp_path) -> Iterator[DeployedRedis]:
    # The old deployed durability: no AOF; the snapshot is taken by the test (SAVE).
    server = DeployedRedis(tmp_path / "redis", ark_redis_appendonly=False,
                           ark_redis_save="86400 1000000000")
    server.start()
    try:
        yield server
    finally:
        server.stop()




def _regress_events(lab: Lab, agent: str) -> list[dict]:
    env = lab.env()
    return [x for x in log_lines(env["ARK_LOG_DIR"], agent)
            if x.get("event") == "redis_state_regressed"]


@pytest.mark.requirement("AGENT_02")
@pytest.mark.requirement("TEST_01")
@pytest.mark.parametrize("snapshot", [True, False], ids=["older-snapshot", "empty"])
def test_redis_back_with_older_state_is_replayed_not_decided_on_a_gap(
        snapshot: bool, rdb_only: DeployedRedis, tmp_path) -> None:
    expected = expected_outcomes(seed=SEED, bars=BARS)
    lab = Lab(rdb_only.server, tmp_path / "world")
    r = rdb_only.server.client()
    try:
        for name in ("hrm", "kenny", "joey"):
            lab.start(name)
        lab.start("kyle", ARK_FEED="synthetic", ARK_FEED_SYMBOLS=",".join(SYMBOLS),
                  ARK_FEED_SEED=str(SEED), ARK_FEED_BARS=str(BARS), ARK_FEED_RATE="400")
        if snapshot:
            wait_for(lambda: kyle_cursor(r) >= TOTAL // 3, 60, interval=0.01, what="a third")
            r.save()
        wait_for(lambda: kyle_cursor(r) >= 2 * TOTAL // 3 and r.xlen("ark:stream:decisions") > 3,
                 60, interval=0.01, what="two thirds of the feed and some decisions")
        rdb_only.kill9()
        rdb_only.start()  # comes back from the snapshot taken a third in, or empty
        assert kyle_cursor(r) < 2 * TOTAL // 3
        wait_for(lambda: drained(r, TOTAL, len(expected)), 120, interval=0.2,
                 what="the pipeline to replay the lost bars and drain")
        assert outcomes(r) == expected  # raises on a decision made twice
        assert len(store_decisions(lab.env()["ARK_STATE_DIR"])) == len(expected)
        assert dead(r) == []
        assert _regress_events(lab, "kyle"), "kyle did not see its cursor go back"
        assert _regress_events(lab, "joey"), "joey did not see its group go back"
        for agent in lab.procs:
            assert agent.proc.poll() is None, f"{agent.name} exited: {agent.stderr()[-2000:]}"
            assert lab.stop(agent) == 0
    finally:
        lab.close()


@pytest.mark.requirement("AGENT_02")
def test_a_live_feed_that_cannot_replay_stops_the_pipeline_naming_the_gap(
        r, redis_server, tmp_path) -> None:
    kyle = Kyle(env={"ARK_STATE_DIR": str(tmp_path), "ARK_FEED": "synthetic",
                     "ARK_FEED_SYMBOLS": "AAPL", "ARK_FEED_BARS": "100"})
    kyle.settings = BusSettings()
    kyle.r = connect(RedisSettings(port=redis_server.port, password=redis_server.password))
    kyle.errors = ErrorBus(kyle.r, "kyle")
    kyle.setup()
    kyle.replayable = False  # what a live adapter declares
    for _ in range(3):
        kyle.step()
    emitted = kyle.position
    assert emitted > 0 and int(r.get(kyle.cursor_key)) == emitted
    r.set(kyle.cursor_key, 10)  # Redis came back from an older snapshot
    kyle.recover()
    kyle.step()
    kyle.step()  # reported once, not on every step
    critical = [e.payload for e in recent(r, 20)
                if e.type == "error.raised" and e.payload["severity"] == "critical"]
    assert len(critical) == 1
    assert f"bars 10..{emitted - 1} of feed {kyle.feed_id}" in critical[0]["message"]
    assert "kyle" in json.loads(r.hget(PAUSE_KEY, "kyle"))["agents"]
    assert kyle.position == emitted  # the gap is named, not papered over
