"""AGENT_04 / issue #12: HRM reads the breaker state once per batch. The batch's transaction
holds the store's write lock, so every plan of it sees the same state either way; a plan
handled outside a batch still reads it afresh."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from ark_runtime.agents.hrm import Hrm
from ark_runtime.bus.envelope import Envelope
from ark_runtime.hrm import BreakerState, RuleEngine
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector
from ark_runtime.planner import AccountConfig, PlanError, plan_trade
from ark_runtime.store import MemoryStore

pytestmark = pytest.mark.requirement("AGENT_04")


def plan_envelopes(n: int) -> list[Envelope]:
    detector, account, out = PatternDetector(), AccountConfig(account_size=100000), []
    for bar in SyntheticAdapter(["AAPL", "MSFT"], seed=0, bars=600):
        for pattern in detector.update(bar):
            try:
                plan = plan_trade(pattern, account)
            except PlanError:
                continue
            out.append(Envelope.new("trade.plan", plan, from_agent="kenny", to_agent="hrm"))
    return out[:n]


@pytest.fixture
def hrm(tmp_path) -> Hrm:
    agent = Hrm(env={"ARK_STATE_DIR": str(tmp_path)})
    agent.log = logging.getLogger("ark.hrm")
    agent.engine = RuleEngine()
    agent.store = MemoryStore(tmp_path / "memory.db")
    agent.approved = agent.rejected = 0
    agent._batch_breakers = None
    yield agent
    agent.store.close()


def suspended_state() -> dict:
    now = datetime.now(UTC)
    return BreakerState(day=now.date()).record_result(-0.5, now).model_dump(mode="json")


def test_a_batch_decides_with_the_state_read_at_its_start(hrm, monkeypatch) -> None:
    envs = plan_envelopes(6)
    reads = []
    real = hrm.store.get_breaker_state
    monkeypatch.setattr(hrm.store, "get_breaker_state", lambda: reads.append(1) or real())
    with hrm.batch_scope():
        verdicts = [hrm.handle(env)[0][1].payload["decision"] for env in envs]
    assert len(reads) == 1
    assert any(v["approved"] for v in verdicts)
    # Outside a batch: read per plan, and a tripped breaker is seen at once.
    hrm.store.set_breaker_state(suspended_state())
    [(_, out)] = hrm.handle(plan_envelopes(7)[-1])
    assert len(reads) == 2 and out.payload["decision"]["approved"] is False
    # The next batch reads the new state too.
    with hrm.batch_scope():
        later = [hrm.handle(env)[0][1].payload["decision"] for env in plan_envelopes(9)[7:]]
    assert len(reads) == 3 and not any(v["approved"] for v in later)
