"""AGENT_01/MEM_01: a plan redelivered to HRM after its decision committed (crash between the
SQLite commit and the Redis ack) is not decided or booked twice."""

from __future__ import annotations

import pytest
from helpers import store_decisions, store_ledger

from ark_runtime.agents.hrm import Hrm
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.errors import ErrorBus
from ark_runtime.bus.streams import BusSettings, connect
from ark_runtime.config import RedisSettings
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector
from ark_runtime.planner import AccountConfig, plan_trade


def approved_plan_envelope() -> Envelope:
    detector = PatternDetector()
    for bar in SyntheticAdapter(["AAPL"], seed=0, bars=400):
        for pattern in detector.update(bar):
            if pattern.confidence >= 0.7:
                plan = plan_trade(pattern, AccountConfig(account_size=100000))
                return Envelope.new("trade.plan", plan, from_agent="kenny", to_agent="hrm")
    raise AssertionError("no confident pattern in the synthetic feed")


@pytest.mark.requirement("AGENT_01")
def test_redelivered_plan_has_no_second_effect(r, redis_server, tmp_path) -> None:
    agent = Hrm(env={"ARK_STATE_DIR": str(tmp_path)})
    agent.settings = BusSettings()
    agent.r = connect(RedisSettings(port=redis_server.port, password=redis_server.password))
    agent.errors = ErrorBus(agent.r, "hrm")
    agent.setup()
    env = approved_plan_envelope()
    first = agent.handle(env)
    # The Redis commit never happened (crash); the plan comes back.
    second = agent.handle(env)
    agent.persist()
    assert first[0][1].message_id == second[0][1].message_id
    assert first[0][1].payload["decision"]["approved"] is True
    assert second[0][1].payload["decision"] == first[0][1].payload["decision"]
    assert len(store_decisions(str(tmp_path))) == 1
    assert len(store_ledger(str(tmp_path))) == 1
