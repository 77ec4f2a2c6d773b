"""AGENT_01, rolling upgrades: on a real Redis, a consumer handles envelopes of schema versions
N-1 and N (and one without a version, read as 1), and dead-letters a newer one with a reason
naming its version, while the entries around it flow."""

from __future__ import annotations

import json

import pytest
from conftest import wait_for
from helpers import dead, pending

from ark_runtime.agents.consumer import ConsumerAgent
from ark_runtime.bus.codec import PROTOCOL_VERSION
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.errors import ErrorBus
from ark_runtime.bus.streams import BusSettings, connect, inbox
from ark_runtime.config import RedisSettings
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector


class Recording(ConsumerAgent):
    """Kenny's inbox and types, handling by remembering what it read."""

    name = "kenny"
    accepts = ("pattern.detected",)

    def __init__(self, env) -> None:
        super().__init__(env=env)
        self.seen: list[tuple[str, int]] = []

    def handle(self, envelope):
        self.seen.append((envelope.message_id, envelope.v))
        return []


def patterns(n: int) -> list[Envelope]:
    detector, out = PatternDetector(), []
    for bar in SyntheticAdapter(["AAPL", "MSFT"], seed=0, bars=2000):
        for pattern in detector.update(bar):
            out.append(Envelope.new("pattern.detected", pattern, from_agent="joey",
                                    to_agent="kenny"))
            if len(out) == n:
                return out
    raise AssertionError("the synthetic feed produced too few patterns")


def entry(env: Envelope, version: int | None) -> dict[str, str]:
    fields = env.to_fields()
    data = json.loads(fields["envelope"])
    if version is None:
        del data["v"]
    else:
        data["v"] = version
    return {**fields, "envelope": json.dumps(data)}


@pytest.mark.requirement("AGENT_01")
def test_mixed_versions_on_one_inbox(r, redis_server) -> None:
    agent = Recording(env={})
    agent.settings = BusSettings(block_ms=20)
    agent.r = connect(RedisSettings(port=redis_server.port, password=redis_server.password))
    agent.errors = ErrorBus(agent.r, "kenny")
    agent.setup()
    n = PROTOCOL_VERSION
    old, new, bare, future = patterns(4)
    for env, version in ((old, n - 1), (future, n + 1), (new, n), (bare, None)):
        r.xadd(inbox("kenny"), entry(env, version))
    wait_for(lambda: agent.step() or (len(agent.seen) == 3 and dead(r)), 15, interval=0.05,
             what="three handled, one dead-lettered")
    assert sorted(agent.seen) == sorted([(old.message_id, n - 1), (new.message_id, n),
                                         (bare.message_id, 1)])
    [letter] = dead(r)
    assert letter["reason"].startswith(
        f"unsupported-version: envelope schema version {n + 1} is newer than this agent "
        "reads")
    assert letter["correlation_id"] == future.correlation_id
    assert json.loads(json.loads(letter["original"])["envelope"])["v"] == n + 1
    assert pending(r, "kenny") == 0
