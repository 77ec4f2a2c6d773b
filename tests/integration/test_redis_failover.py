"""Issue #20 §1 (AGENT_02/TEST_01): the pipeline on a replicated Redis behind three Sentinels
(tests/integration/sentinel_redis.py). The agents find the primary through the Sentinels
(ARK_REDIS_SENTINELS); under a paced feed the primary's redis-server is SIGKILLed, the
Sentinels promote the replica, and every agent reaches the new primary by itself. Every
decision of the fault-free run comes out exactly once, none missing, none extra; the old
primary, started again, rejoins as the new primary's replica."""

from __future__ import annotations

import time

import pytest
from conftest import Lab, wait_for
from deployed_redis import DeployedRedis
from helpers import dead, drained, kyle_cursor, log_lines, store_decisions
from sentinel_redis import MASTER, SentinelRedis
from test_pipeline import SYMBOLS, expected_outcomes, outcomes

from ark_runtime.bus.clients import redis_client
from ark_runtime.config import RedisSettings, parse_sentinels

pytestmark = [pytest.mark.requirement("AGENT_02"), pytest.mark.requirement("TEST_01")]

SEED, BARS = 11, 250
TOTAL = BARS * len(SYMBOLS)


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
                    # What an HA inventory sets: each commit waits for the replica.
                    "ARK_BUS_WAIT_REPLICAS": "1",
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


def _events(lab: Lab, agent: str) -> list[str]:
    return [x.get("event", "") for x in log_lines(lab.env()["ARK_LOG_DIR"], agent)]


def test_commits_that_reach_no_replica_are_said_once_and_again_when_one_catches_up(
        tmp_path) -> None:
    """ARK_BUS_WAIT_REPLICAS=1 on a Redis with no replica: the pipeline still flows, each
    agent says once that its commits reach no replica; when a replica attaches, it says
    they reach it again."""
    primary = DeployedRedis(tmp_path / "primary")
    replica = DeployedRedis(tmp_path / "replica")
    lab = Lab(primary.start(), tmp_path / "world")
    try:
        waits = {"ARK_BUS_WAIT_REPLICAS": "1", "ARK_BUS_WAIT_TIMEOUT_MS": "50"}
        lab.start("joey", **waits)
        lab.start("kyle", ARK_FEED="synthetic", ARK_FEED_SYMBOLS=",".join(SYMBOLS),
                  ARK_FEED_SEED=str(SEED), ARK_FEED_BARS="100000", ARK_FEED_RATE="200",
                  **waits)
        r = primary.server.client()
        for agent in ("kyle", "joey"):
            wait_for(lambda a=agent: "commit_not_replicated" in _events(lab, a), 60,
                     interval=0.2, what=f"{agent} to say its commits reach no replica")
        before = kyle_cursor(r)
        wait_for(lambda: kyle_cursor(r) > before + 50, 60, interval=0.2,
                 what="Kyle to go on feeding meanwhile")
        replica.password = primary.password
        with (replica.dir / "redis.conf").open("a") as conf:
            conf.write(f"masterauth {primary.password}\nreplicaof 127.0.0.1 {primary.port}\n")
        replica.start()
        for agent in ("kyle", "joey"):
            wait_for(lambda a=agent: "commit_replicated" in _events(lab, a), 60, interval=0.2,
                     what=f"{agent} to say its commits reach the replica again")
            assert _events(lab, agent).count("commit_not_replicated") == 1, agent
    finally:
        lab.close()
        replica.close()
        primary.close()


def _replica_gauges(source) -> dict[str, float]:
    return {m.name: m.samples[0].value for m in source.metrics()
            if m.name in ("ark_redis_replicas", "ark_redis_replicas_down",
                          "ark_redis_sentinel_up")}


@pytest.mark.requirement("LOG_03")
def test_the_exporter_counts_a_replica_down_while_the_sentinels_see_it_down(
        replicated: SentinelRedis) -> None:
    """ArkRedisReplicaDown's figures (issue #20): the bus collector asks the Sentinels for
    the set's replicas; a SIGKILLed replica is counted down once they call it down, and up
    again when it is back. With no Sentinel answering, `ark_redis_sentinel_up` is 0."""
    from ark_runtime.bus.clients import sentinel_replicas
    from ark_runtime.metrics.bus import BusSource

    settings = RedisSettings(password=replicated.password,
                             sentinels=parse_sentinels(replicated.addresses),
                             sentinel_master=MASTER)
    source = BusSource(redis_client(settings, decode_responses=True),
                       lambda: sentinel_replicas(settings))
    assert _replica_gauges(source) == {"ark_redis_sentinel_up": 1.0, "ark_redis_replicas": 1.0,
                                       "ark_redis_replicas_down": 0.0}
    replica = replicated.servers[1]
    replica.kill9()
    wait_for(lambda: _replica_gauges(source).get("ark_redis_replicas_down") == 1.0, 60,
             interval=0.2, what="the Sentinels to call the replica down")
    replica.start()
    wait_for(lambda: _replica_gauges(source).get("ark_redis_replicas_down") == 0.0, 60,
             interval=0.2, what="the replica to be back")
    nobody = RedisSettings(password=replicated.password,
                           sentinels=parse_sentinels("127.0.0.1:1"), sentinel_master=MASTER)
    gauges = _replica_gauges(BusSource(redis_client(settings, decode_responses=True),
                                       lambda: sentinel_replicas(nobody)))
    assert gauges == {"ark_redis_sentinel_up": 0.0}
