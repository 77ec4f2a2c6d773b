"""Kenny's trade plans: ATR stops, risk-based sizing, caps, paper only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from ark_runtime.patterns import Pattern
from ark_runtime.planner import AccountConfig, PlanError, TradePlan, plan_trade


def pattern(
    direction: str = "long", price: float = 100.0, atr: float = 2.0, **kw: object
) -> Pattern:
    ind = {
        "sma_fast": price,
        "sma_slow": price,
        "ema": price,
        "rsi": 60.0,
        "atr": atr,
        "atr_pct": atr / price,
        "avg_volume": 500_000.0,
        "volume_ratio": 2.0,
    }
    fields: dict[str, object] = dict(
        symbol="AAPL",
        kind="breakout",
        direction=direction,
        confidence=0.8,
        price=price,
        ts=datetime(2024, 1, 2, tzinfo=UTC),
        indicators=ind,
    )
    fields.update(kw)
    return Pattern.model_validate(fields)


def test_long_plan_numbers() -> None:
    acct = AccountConfig(
        account_size=100_000,
        risk_per_trade=0.01,
        atr_stop_multiple=2,
        reward_multiple=3,
        max_position_size=1.0,
    )
    plan = plan_trade(pattern(), acct)
    assert plan.entry == 100
    assert plan.stop_loss == pytest.approx(96)  # 2 ATR below
    assert plan.target == pytest.approx(112)  # 3 x the 4-point risk
    # risk budget 1000 / 4 per unit = 250 units = 25000 notional = 25% of the account
    assert plan.quantity == pytest.approx(250)
    assert plan.position_size == pytest.approx(0.25)
    assert plan.max_loss == pytest.approx(0.01)
    assert plan.risk_reward == pytest.approx(3)
    assert plan.atr_pct == pytest.approx(0.02)
    assert plan.avg_volume == 500_000
    assert (plan.pattern, plan.source, plan.catalyst, plan.paper) == (
        "breakout",
        "technical",
        "",
        True,
    )


def test_short_plan_mirrors() -> None:
    acct = AccountConfig(account_size=100_000, atr_stop_multiple=2, reward_multiple=2)
    plan = plan_trade(pattern("short"), acct)
    assert plan.stop_loss == pytest.approx(104)
    assert plan.target == pytest.approx(92)
    assert plan.direction == "short"


def test_position_capped_and_max_loss_follows() -> None:
    acct = AccountConfig(account_size=100_000, max_position_size=0.10)
    plan = plan_trade(pattern(atr=0.5), acct)  # risk sizing alone would want 100% of account
    assert plan.position_size <= 0.10
    assert plan.position_size == pytest.approx(0.10, rel=1e-3)
    assert plan.max_loss == pytest.approx(plan.quantity * 1.0 / 100_000)


def test_size_multiplier_halves() -> None:
    acct = AccountConfig(account_size=100_000, max_position_size=1.0)
    full = plan_trade(pattern(), acct)
    half = plan_trade(pattern(), acct, size_multiplier=0.5)
    assert half.quantity == pytest.approx(full.quantity / 2)
    assert half.max_loss == pytest.approx(full.max_loss / 2)
    with pytest.raises(PlanError):
        plan_trade(pattern(), acct, size_multiplier=0)


def test_quantity_rounded_down_to_step() -> None:
    acct = AccountConfig(account_size=1000, quantity_step=1, max_position_size=1.0)
    plan = plan_trade(pattern(price=33.0, atr=1.0), acct)
    assert plan.quantity == 5  # budget 10 / 2 per unit = 5
    assert plan.quantity * 2 / 1000 <= 0.01


def test_account_too_small() -> None:
    acct = AccountConfig(account_size=10, quantity_step=1)
    with pytest.raises(PlanError, match="cannot buy"):
        plan_trade(pattern(), acct)


def test_atr_too_large_for_short_target() -> None:
    with pytest.raises(PlanError, match="too large"):
        plan_trade(pattern("short", price=10, atr=3), AccountConfig(account_size=1e6))


def test_missing_atr() -> None:
    p = pattern()
    p2 = p.model_copy(update={"indicators": {k: v for k, v in p.indicators.items() if k != "atr"}})
    with pytest.raises(PlanError, match="ATR"):
        plan_trade(p2, AccountConfig(account_size=1e5))


def test_account_config_validation() -> None:
    with pytest.raises(ValidationError):
        AccountConfig(account_size=0)
    with pytest.raises(ValidationError):
        AccountConfig(account_size=100, risk_per_trade=0.5)


def test_plan_is_paper_only_and_rule_input_is_json() -> None:
    plan = plan_trade(pattern(), AccountConfig(account_size=1e5))
    data = plan.rule_input()
    assert data["paper"] is True and isinstance(data["pattern_ts"], str)
    with pytest.raises(ValidationError):
        TradePlan.model_validate({**data, "paper": False})
    assert not any(hasattr(plan, n) for n in ("submit", "place_order", "execute"))
