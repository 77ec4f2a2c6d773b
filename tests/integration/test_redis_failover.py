"""Issue #20 §1 (AGENT_02/TEST_01): the pipeline on a replicated Redis behind three Sentinels
(tests/integration/sentinel_redis.py). The agents find the primary through the Sentinels
(ARK_REDIS_SENTINELS); under a paced feed the primary's redis-server is SIGKILLed, the
Sentinels promote the replica, and every agent reaches the new primary by itself. Every
decision of the fault-free run comes out exactly once, none missing, none extra; the old
primary, started again, rejoins as the new primary's replica."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import Lab, wait_for
from helpers import dead, drained, kyle_cursor, store_decisions
from sentinel_redis import MASTER, SentinelRedis
from test_pipeline import SYMBOLS, expected_outcomes, outcomes

from ark_runtime.bus.clients import redis_client
from ark_runtime.config import RedisSettings, parse_sentinels

pytestmark = [pytest.mark.requirement("AGENT_02"), pytest.mark.requirement("TEST_01")]

SEED, BARS = 11, 250
TOTAL = BARS * len(SYMBOLS)


@pytest.fixture
def replicated(tmp_path) -> Iterator[SentinelRedis]:
    world = SentinelRedis(tmp_path / "redis")
    try:
        world.start()
        yield world
    finally:
        world.stop()


# paced: Kyle at 300 bars/s; burst: as fast as it can, so the kill lands on writes the
# replica may not have had yet (replication is asynchronous).
RATES = {"paced": {"ARK_FEED_RATE": "300"}, "burst": {}}


@pytest.mark.parametrize("load", list(RATES))
def test_a_killed_primary_fails_over_and_the_pipeline_loses_and_doubles_nothing(
        load: str, replicated: SentinelRedis, tmp_path) -> None:
    expected = expected_outcomes(seed=SEED, bars=BARS)
    first = replicated.primary()
    # The test's own client follows the primary the same way the agents' do.
    r = redis_client(RedisSettings(password=replicated.password,
                                   sentinels=parse_sentinels(replicated.addresses),
                                   sentinel_master=MASTER), decode_responses=True,
                     socket_timeout=5)
    sentinel_env = {"ARK_REDIS_SENTINELS": replicated.addresses,
                    "ARK_REDIS_SENTINEL_MASTER": MASTER,
                    # Dialled by nothing: a client that ignored the Sentinels fails at once.
                    "ARK_REDIS_HOST": "127.0.0.1", "ARK_REDIS_PORT": "1"}
    lab = Lab(first.server, tmp_path / "world")
    try:
        for name in ("hrm", "kenny", "joey"):
            lab.start(name, **sentinel_env)
        lab.start("kyle", ARK_FEED="synthetic", ARK_FEED_SYMBOLS=",".join(SYMBOLS),
                  ARK_FEED_SEED=str(SEED), ARK_FEED_BARS=str(BARS), **RATES[load],
                  **sentinel_env)
        wait_for(lambda: kyle_cursor(r) >= TOTAL // 3, 60, interval=0.01,
                 what="a third of the feed")
        killed_at = time.monotonic()
        first.kill9()
        wait_for(lambda: replicated.primary_port() not in (None, first.port), 60, interval=0.2,
                 what="the Sentinels to promote the replica")
        promoted_after = time.monotonic() - killed_at
        wait_for(lambda: drained(r, TOTAL, len(expected)), 180, interval=0.2,
                 what="the pipeline to drain on the new primary")
        assert outcomes(r) == expected  # raises on a decision made twice
        assert len(store_decisions(lab.env()["ARK_STATE_DIR"])) == len(expected)
        assert dead(r) == []
        # The old primary comes back as a replica of the new one.
        first.start()
        wait_for(lambda: replicated.role(first) == "slave", 60, interval=0.2,
                 what="the old primary to rejoin as a replica")
        for agent in lab.procs:
            assert agent.proc.poll() is None, f"{agent.name} exited: {agent.stderr()[-2000:]}"
            assert lab.stop(agent) == 0
        print(f"replica promoted {promoted_after:.1f} s after the kill")
    finally:
        lab.close()
