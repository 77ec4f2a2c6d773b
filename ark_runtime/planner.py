"""Kenny: turns a detected pattern into a paper trade plan.

Stop loss is a multiple of ATR away from entry, the target a multiple of that risk, and the
position is sized so that being stopped out loses `risk_per_trade` of the account (capped at
`max_position_size`). Paper only: this module computes numbers; nothing here, or anywhere in
ARK, places an order.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ark_runtime.patterns import Pattern
from ark_runtime.validators import Symbol, UtcTime

__all__ = ["AccountConfig", "PlanError", "TradePlan", "plan_trade"]


class PlanError(ValueError):
    """The pattern cannot be turned into a sensible plan (e.g. the account is too small)."""


class AccountConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    account_size: float = Field(gt=0)
    risk_per_trade: float = Field(default=0.01, gt=0, le=0.1)
    atr_stop_multiple: float = Field(default=2.0, gt=0)
    reward_multiple: float = Field(default=2.5, gt=0)
    # Kenny never proposes more than this fraction of the account in one position; HRM's
    # RISK-001 checks the same bound independently.
    max_position_size: float = Field(default=0.10, gt=0, le=1.0)
    quantity_step: float = Field(default=0.0001, gt=0)


class TradePlan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: Symbol
    direction: Literal["long", "short"]
    entry: float = Field(gt=0)
    stop_loss: float = Field(gt=0)
    target: float = Field(gt=0)
    position_size: float = Field(ge=0, le=1)  # fraction of the account
    quantity: float = Field(gt=0)
    risk_reward: float = Field(ge=0)
    max_loss: float = Field(ge=0, le=1)  # fraction of the account lost if stopped out
    atr: float = Field(gt=0)
    atr_pct: float = Field(ge=0)
    price: float = Field(gt=0)
    avg_volume: float = Field(ge=0)
    confidence: float = Field(ge=0, le=1)
    pattern: Literal["breakout", "ma_cross"]
    pattern_ts: UtcTime
    catalyst: str = ""
    source: str = "technical"
    # Time limit: the executor closes the position at the close of its hold_bars-th bar.
    hold_bars: int = Field(default=20, ge=1, le=100_000)
    paper: Literal[True] = True



    def rule_input(self) -> dict[str, object]:
        """The flat dict HRM evaluates (JSON-safe)."""
        return self.model_dump(mode="json")


def plan_trade(
    pattern: Pattern,
    account: AccountConfig,
    *,
    size_multiplier: float = 1.0,
    catalyst: str = "",
    source: str = "technical",
) -> TradePlan:
    """`size_multiplier` < 1 shrinks the position (HRM's consecutive-loss breaker)."""
    if not 0 < size_multiplier <= 1:
        raise PlanError(f"size_multiplier must be in (0, 1], got {size_multiplier}")
    entry = pattern.price
    atr = pattern.indicators.get("atr")
    if atr is None or not math.isfinite(atr) or atr <= 0:
        raise PlanError(f"{pattern.symbol}: pattern carries no usable ATR")
    stop_distance = atr * account.atr_stop_multiple
    reward_distance = stop_distance * account.reward_multiple
    if pattern.direction == "long":
        stop, target = entry - stop_distance, entry + reward_distance
    else:
        stop, target = entry + stop_distance, entry - reward_distance
    if stop <= 0 or target <= 0:
        raise PlanError(
            f"{pattern.symbol}: ATR {atr:g} is too large for price {entry:g} "
            f"(stop {stop:g}, target {target:g})"
        )

    # Size by risk: quantity such that hitting the stop loses risk_per_trade of the account,
    # then cap the notional at max_position_size.
    risk_budget = account.account_size * account.risk_per_trade * size_multiplier
    quantity = risk_budget / stop_distance
    max_notional = account.account_size * account.max_position_size * size_multiplier
    quantity = min(quantity, max_notional / entry)
    quantity = math.floor(quantity / account.quantity_step) * account.quantity_step
    quantity = round(quantity, 10)  # drop float noise from the step multiplication
    if quantity <= 0:
        raise PlanError(
            f"{pattern.symbol}: account of {account.account_size:g} cannot buy one step "
            f"({account.quantity_step:g}) at {entry:g}"
        )
    notional = quantity * entry
    return TradePlan(
        symbol=pattern.symbol,
        direction=pattern.direction,
        entry=entry,
        stop_loss=round(stop, 6),
        target=round(target, 6),
        position_size=notional / account.account_size,
        quantity=quantity,
        risk_reward=reward_distance / stop_distance,
        max_loss=quantity * stop_distance / account.account_size,
        atr=atr,
        atr_pct=atr / entry,
        price=entry,
        avg_volume=pattern.indicators.get("avg_volume", 0.0),
        confidence=pattern.confidence,
        pattern=pattern.kind,
        pattern_ts=pattern.ts,
        catalyst=catalyst,
        source=source,
    )
