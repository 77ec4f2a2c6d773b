"""Issue #19 (AGENT_02/TEST_01): redis-server SIGKILLed five times under three loads and
restarted with the deployed config (the ark_redis role's template, rendered): every decision
of the fault-free run comes out exactly once, none is missing, none extra (a decision made on
a window with a gap would be one the fault-free run never made). One kill comes before the
first RDB save, when an RDB-only Redis came back empty.

The appendfsync under test is the role's default; ARK_TEST_REDIS_APPENDFSYNC=everysec (or
ARK_TEST_REDIS_APPENDONLY=no) runs the same test against another setting for comparison."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import redis
from conftest import Lab, wait_for
from deployed_redis import DeployedRedis
from helpers import dead, drained, kyle_cursor, store_decisions
from test_pipeline import SYMBOLS, expected_outcomes, outcomes

SEED, BARS = 11, 250
TOTAL = BARS * len(SYMBOLS)


def _overrides() -> dict[str, object]:
    out: dict[str, object] = {}
    if os.environ.get("ARK_TEST_REDIS_APPENDFSYNC"):
        out["ark_redis_appendfsync"] = os.environ["ARK_TEST_REDIS_APPENDFSYNC"]
    if os.environ.get("ARK_TEST_REDIS_APPENDONLY") == "no":
        out["ark_redis_appendonly"] = False
    return out


@pytest.fixture
def deployed(tmp_path) -> Iterator[DeployedRedis]:
    server = DeployedRedis(tmp_path / "redis", **_overrides())
    server.start()
    try:
        yield server
    finally:
        server.stop()




def _crash(deployed: DeployedRedis, r: redis.Redis, when: Callable[[], bool], what: str) -> None:
    wait_for(when, 60, interval=0.01, what=what)
    deployed.kill9()
    deployed.start()  # the same config, port and directory, as systemd's Restart= would


def _kyle(lab: Lab, **extra: str):
    return lab.start("kyle", ARK_FEED="synthetic", ARK_FEED_SYMBOLS=",".join(SYMBOLS),
                     ARK_FEED_SEED=str(SEED), ARK_FEED_BARS=str(BARS), **extra)


def _consumers(lab: Lab) -> None:
    for name in ("hrm", "kenny", "joey"):
        lab.start(name)


def _paced(lab: Lab, deployed: DeployedRedis, r: redis.Redis) -> None:
    _consumers(lab)
    _kyle(lab, ARK_FEED_RATE="400")
    _crash(deployed, r, lambda: kyle_cursor(r) >= TOTAL // 3, "a third of the feed")
    _crash(deployed, r, lambda: kyle_cursor(r) >= 2 * TOTAL // 3, "two thirds of the feed")


def _backlog(lab: Lab, deployed: DeployedRedis, r: redis.Redis) -> None:
    _kyle(lab)  # the whole feed waits in Joey's inbox before any consumer runs
    wait_for(lambda: kyle_cursor(r) >= TOTAL, 60, what="the feed in Joey's inbox")
    _consumers(lab)
    _crash(deployed, r, lambda: r.xlen("ark:stream:decisions") >= 3, "the backlog draining")


def _burst(lab: Lab, deployed: DeployedRedis, r: redis.Redis) -> None:
    _consumers(lab)
    _kyle(lab)
    _crash(deployed, r, lambda: kyle_cursor(r) >= TOTAL // 4, "a quarter of the burst")
    # The first kill came before Redis ever wrote an RDB snapshot: with RDB alone (Debian's
    # default) this restart found an empty database.
    assert not deployed.rdb_saved()
    _crash(deployed, r, lambda: r.xlen("ark:stream:decisions") >= 5, "decisions flowing")


LOADS = {"paced": (_paced, 2), "backlog": (_backlog, 1), "burst": (_burst, 2)}


@pytest.mark.requirement("AGENT_02")
@pytest.mark.requirement("TEST_01")
@pytest.mark.parametrize("load", list(LOADS))
def test_redis_killed_under_load_loses_and_doubles_no_decision(
        load: str, deployed: DeployedRedis, tmp_path) -> None:
    expected = expected_outcomes(seed=SEED, bars=BARS)
    assert len(expected) > 10
    lab = Lab(deployed.server, tmp_path / "world")
    r = deployed.server.client()
    try:
        scenario, kills = LOADS[load]
        scenario(lab, deployed, r)
        assert deployed.kills == kills
        wait_for(lambda: drained(r, TOTAL, len(expected)), 120, interval=0.2,
                 what=f"the pipeline to drain after {kills} Redis crashes ({load})")
        assert outcomes(r) == expected  # raises on a decision made twice
        assert len(store_decisions(lab.env()["ARK_STATE_DIR"])) == len(expected)
        assert dead(r) == []
        for agent in lab.procs:
            assert agent.proc.poll() is None, f"{agent.name} exited: {agent.stderr()[-2000:]}"
            assert lab.stop(agent) == 0
    finally:
        lab.close()
