"""Circuit-breaker state the HRM engine consults (AGENT_04).

The state is a small value object: the engine reads it, the paper ledger updates it when a
trade closes (`record_result`), and the memory store persists it between restarts
(`MemoryStore.get_breaker_state` / `set_breaker_state` take and return its dict form).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydantic import BaseModel, ConfigDict, Field

from ark_runtime.hrm.ruleset import BreakerConfig

__all__ = ["BreakerState"]


def _now() -> datetime:
    return datetime.now(UTC)


class BreakerState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    day: date = Field(default_factory=lambda: _now().date())  # UTC trading day of daily_pnl
    daily_pnl: float = 0.0  # realized paper P&L today, as a fraction of the account
    consecutive_losses: int = Field(default=0, ge=0)

    def record_result(self, pnl: float, now: datetime | None = None) -> BreakerState:
        """A closed paper trade's P&L (fraction of account; negative = loss)."""
        today = (now or _now()).astimezone(UTC).date()
        daily = (self.daily_pnl if today == self.day else 0.0) + pnl
        if pnl < 0:
            streak = self.consecutive_losses + 1
        elif pnl > 0:
            streak = 0
        else:
            streak = self.consecutive_losses  # break-even neither extends nor ends a streak
        return BreakerState(day=today, daily_pnl=daily, consecutive_losses=streak)

    def daily_loss(self, now: datetime | None = None) -> float:
        """Today's realized loss as a positive fraction (0 if flat/up or a new day)."""
        today = (now or _now()).astimezone(UTC).date()
        return max(0.0, -self.daily_pnl) if today == self.day else 0.0

    def suspended(self, config: BreakerConfig, now: datetime | None = None) -> bool:
        limit = config.daily_loss_limit
        return limit is not None and self.daily_loss(now) >= limit

    def size_multiplier(self, config: BreakerConfig) -> float:
        n = config.consecutive_losses
        return config.size_factor if n is not None and self.consecutive_losses >= n else 1.0

    def reset_streak(self) -> BreakerState:
        """Operator action: clear the consecutive-loss streak."""
        return self.model_copy(update={"consecutive_losses": 0})
