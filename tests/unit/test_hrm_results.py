"""AGENT_04: HRM consumes the executor's results. Property tests over random price paths and
rulesets: HRM never approves a plan that would take open exposure past the limits, and a
breaker trips on exactly the close that reaches its threshold, not one trade later."""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ark_runtime.agents.hrm import Hrm
from ark_runtime.bus.envelope import Envelope
from ark_runtime.execution.paper import ExecConfig, Order, PositionClosed, SymbolBook
from ark_runtime.hrm import RuleEngine, load_ruleset, parse_ruleset
from ark_runtime.market import Bar
from ark_runtime.planner import TradePlan
from ark_runtime.store import MemoryStore

pytestmark = pytest.mark.requirement("AGENT_04")

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
SYMBOLS = ("AAPL", "MSFT", "NVDA")
EPS = 1e-9


def make_hrm(root: Path, rules: dict) -> Hrm:
    agent = Hrm(env={"ARK_STATE_DIR": str(root)})
    agent.log = logging.getLogger("ark.hrm")
    agent.engine = RuleEngine(parse_ruleset(rules))
    agent.store = MemoryStore(root / "memory.db")
    agent.approved = agent.rejected = 0
    agent._batch_breakers = None
    return agent


def ruleset_doc(daily: float, streak: int, per_symbol: float, total: float) -> dict:
    base = load_ruleset()
    rules = [{"id": r.id, "severity": r.severity, "message": r.message, "field": r.check.field,
              "operator": r.check.operator, "value": r.check.value}
             for r in base.rules if r.check is not None and r.id.startswith("RISK-002")]
    return {"version": "prop", "strict_mode": False, "rules": rules,
            "circuit_breakers": {"daily_loss_limit": daily, "loss_streak_limit": streak},
            "exposure_limits": {"per_symbol": per_symbol, "total": total}}


def plan(symbol: str, size: float, minute: int) -> TradePlan:
    return TradePlan(symbol=symbol, direction="long", entry=100, stop_loss=95, target=110,
                     position_size=size, quantity=size * 1000, risk_reward=2, max_loss=0.01,
                     atr=2, atr_pct=0.02, price=100, avg_volume=1e6, confidence=0.9,
                     pattern="breakout", pattern_ts=T0 + timedelta(minutes=minute))


def close_of(p: TradePlan, cid: str, path: list[float], minute: int) -> PositionClosed:
    """Run the plan through the paper executor over a price path; the close it makes (a
    path that never exits is closed by its time limit)."""
    cfg = ExecConfig(slippage_bps=1, fee_bps=1)
    order = Order(correlation_id=cid, symbol=p.symbol, direction="long", stop_loss=p.stop_loss,
                  target=p.target, position_size=p.position_size, quantity=p.quantity,
                  hold_bars=len(path) - 1, signal_ts=p.pattern_ts)
    book, _ = SymbolBook(symbol=p.symbol).on_order(order, cfg)
    for k, price in enumerate(path):
        o = path[k - 1] if k else 100.0
        bar = Bar(symbol=p.symbol, ts=T0 + timedelta(minutes=minute, seconds=k + 1), open=o,
                  high=max(o, price) * 1.001, low=min(o, price) * 0.999, close=price,
                  volume=1e6)
        book, events = book.on_bar(bar, cfg)
        for event in events:
            if isinstance(event, PositionClosed):
                return event
    raise AssertionError("the time limit closes every position")


paths = st.lists(st.floats(min_value=85, max_value=115), min_size=2, max_size=6)
steps = st.lists(st.tuples(st.sampled_from(SYMBOLS), st.floats(0.01, 0.1), st.booleans(),
                           paths), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(daily=st.floats(0.002, 0.05), streak=st.integers(1, 6),
       per_symbol=st.floats(0.02, 0.2), total=st.floats(0.05, 0.4), script=steps)
def test_exposure_is_never_exceeded_and_breakers_trip_at_their_threshold(
        daily, streak, per_symbol, total, script) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hrm = make_hrm(Path(tmp), ruleset_doc(daily, streak, per_symbol, total))
        try:
            _run_script(hrm, daily, streak, per_symbol, total, script)
        finally:
            hrm.store.close()


def _run_script(hrm: Hrm, daily, streak, per_symbol, total, script) -> None:
    open_plans: list[tuple[TradePlan, str]] = []
    loss, losses = 0.0, 0  # the reference: this session's loss and the streak
    for minute, (symbol, size, close_one, path) in enumerate(script):
        if close_one and open_plans:
            p, cid = open_plans.pop(0)
            close = close_of(p, cid, path, minute)
            env = Envelope.new("position.closed", close, from_agent="executor", to_agent="hrm")
            hrm.handle(env)
            loss -= close.pnl
            losses = losses + 1 if close.pnl < 0 else (0 if close.pnl > 0 else losses)
            continue
        p = plan(symbol, size, minute)
        env = Envelope.new("trade.plan", p, from_agent="kenny", to_agent="hrm")
        decision = hrm.handle(env)[0][1].payload["decision"]
        ids = {v["rule_id"] for v in decision["violations"]}
        # A breaker blocks exactly when its value has reached the threshold.
        assert ("BRK-DAILY-LOSS" in ids) == (loss >= daily - 1e-12)
        assert ("BRK-LOSS-STREAK" in ids) == (losses >= streak)
        exposure = hrm.store.open_exposure()
        for sym, value in exposure.items():
            assert value <= per_symbol + EPS, f"{sym} exposure {value} > {per_symbol}"
        assert sum(exposure.values()) <= total + EPS
        if decision["approved"]:
            open_plans.append((p, env.correlation_id))
        else:
            # Rejected for exposure only when it really would have exceeded a limit.
            before = {**exposure}
            adds = size * decision["size_multiplier"]
            if "EXP-SYMBOL" in ids:
                assert before.get(symbol, 0) + adds > per_symbol
            if "EXP-TOTAL" in ids:
                assert sum(before.values()) + adds > total


def test_a_close_is_counted_once_and_its_trip_is_re_emitted_on_redelivery(tmp_path) -> None:
    hrm = make_hrm(tmp_path, ruleset_doc(0.004, 10, 0.2, 0.5))
    p = plan("AAPL", 0.1, 0)
    env = Envelope.new("trade.plan", p, from_agent="kenny", to_agent="hrm")
    assert hrm.handle(env)[0][1].payload["decision"]["approved"]
    close = close_of(p, env.correlation_id, [94.0, 94.0], 1)  # stopped: -0.5% and fees
    closed = Envelope.new("position.closed", close, from_agent="executor", to_agent="hrm")
    first = hrm.handle(closed)
    again = hrm.handle(closed)  # the Redis commit was lost: the close comes back
    assert [e.type for _s, e in first] == ["error.raised"]
    assert [(s, e.message_id) for s, e in again] == [(s, e.message_id) for s, e in first]
    state = hrm._breakers()
    assert state.positions_closed == 1 and state.realised_pnl == pytest.approx(close.pnl)
    assert hrm.store.ledger("closed")[0]["pnl"] == pytest.approx(close.pnl)
    hrm.store.close()


def test_a_breaker_trips_on_the_close_that_reaches_the_threshold_exactly() -> None:
    from ark_runtime.hrm import BreakerState

    cfg = parse_ruleset(ruleset_doc(0.8, 3, 1, 1)).breakers
    state = BreakerState().record_result(-0.7, T0, cfg)
    assert state.tripped(cfg, T0) == []
    state = state.record_result(-0.1, T0, cfg)  # 0.7 + 0.1 is 0.7999999999999999 in floats
    assert state.tripped(cfg, T0) == ["daily_loss"]
    # The next session starts again (market time, the ruleset's zone), the streak does not.
    state = state.record_result(-0.01, T0, cfg)
    assert state.tripped(cfg, T0) == ["daily_loss", "loss_streak"]
    assert state.tripped(cfg, T0 + timedelta(days=1)) == ["loss_streak"]
    assert state.reset("loss_streak").tripped(cfg, T0 + timedelta(days=1)) == []
    assert state.reset("daily_loss", T0, cfg).tripped(cfg, T0) == ["loss_streak"]
    assert state.realised_pnl == pytest.approx(-0.81) and state.positions_closed == 3
