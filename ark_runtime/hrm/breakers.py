"""Circuit-breaker and risk state the HRM engine consults (AGENT_04).

The state is a small value object: the engine reads it, HRM updates it when the executor
reports a closed position (`record_result`, in the same store transaction as that message's
idempotency mark), and the memory store persists it (`MemoryStore.get_breaker_state` /
`set_breaker_state` take and return its dict form).

A breaker is tripped exactly while its value is at or past its threshold (`>=`): the
daily-loss breaker while this session's realised loss is at least `daily_loss_limit`, the
loss-streak breaker while the losing streak is at least `loss_streak_limit`. So it trips on
the very close that reaches the threshold, not one trade later. It clears when its value
does: the daily values start again at the session boundary (market time, in the ruleset's
time zone), and an operator reset (`reset`) sets the value back to zero.

Times are market time (the bars' timestamps carried by plans and closes), so a replayed feed
trips the same breakers at the same trade as a live one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydantic import BaseModel, ConfigDict, Field

from ark_runtime.hrm.ruleset import BreakerConfig
from ark_runtime.market import session_of

__all__ = ["BREAKERS", "BreakerState"]

BREAKERS = ("daily_loss", "loss_streak")
# Sums of fractions in binary floating point: 0.01 * 3 lands a hair under 0.03. A loss within
# this of the limit counts as at the limit (far below any meaningful P&L).
EPSILON = 1e-12


def _now() -> datetime:
    return datetime.now(UTC)


class BreakerState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The session of daily_pnl. A fresh state has none yet (date.min): its first result
    # sets it, on the market's clock, whatever the wall clock says (a replayed feed).
    day: date = date.min
    daily_pnl: float = 0.0  # realised paper P&L this session, as a fraction of the account
    consecutive_losses: int = Field(default=0, ge=0)
    realised_pnl: float = 0.0  # since the store began (never reset)
    positions_closed: int = Field(default=0, ge=0)

    def _session(self, now: datetime | None, config: BreakerConfig | None) -> date:
        now = now or _now()
        if config is None:
            return now.astimezone(UTC).date()
        return date.fromisoformat(session_of(now, config.session_timezone,
                                             config.session_reset))

    def at(self, now: datetime | None = None,
           config: BreakerConfig | None = None) -> BreakerState:
        """The state as of `now`: the daily values start again in a later session. None:
        as of the state's own session (what it last recorded)."""
        if now is None:
            return self
        session = self._session(now, config)
        if session <= self.day:
            return self
        return self.model_copy(update={"day": session, "daily_pnl": 0.0})

    def record_result(self, pnl: float, now: datetime | None = None,
                      config: BreakerConfig | None = None) -> BreakerState:
        """A closed paper trade's P&L (fraction of account; negative = loss) at market time
        `now`. A result from an earlier session than the current one counts in the totals
        and the streak but not in today's P&L."""
        now = now or _now()
        rolled = self.at(now, config)
        same_session = self._session(now, config) == rolled.day
        if pnl < 0:
            streak = self.consecutive_losses + 1
        elif pnl > 0:
            streak = 0
        else:
            streak = self.consecutive_losses  # break-even neither extends nor ends a streak
        return rolled.model_copy(update={
            "daily_pnl": rolled.daily_pnl + (pnl if same_session else 0.0),
            "consecutive_losses": streak,
            "realised_pnl": self.realised_pnl + pnl,
            "positions_closed": self.positions_closed + 1,
        })

    def daily_loss(self, now: datetime | None = None,
                   config: BreakerConfig | None = None) -> float:
        """This session's realised loss as a positive fraction (0 if flat/up or a new one)."""
        return max(0.0, -self.at(now, config).daily_pnl)

    def tripped(self, config: BreakerConfig, now: datetime | None = None) -> list[str]:
        """The breakers tripped as of `now`, in BREAKERS order."""
        out = []
        limit = config.daily_loss_limit
        if limit is not None and self.daily_loss(now, config) >= limit - EPSILON:
            out.append("daily_loss")
        streak = config.loss_streak_limit
        if streak is not None and self.consecutive_losses >= streak:
            out.append("loss_streak")
        return out

    def suspended(self, config: BreakerConfig, now: datetime | None = None) -> bool:
        return "daily_loss" in self.tripped(config, now)

    def size_multiplier(self, config: BreakerConfig) -> float:
        n = config.consecutive_losses
        return config.size_factor if n is not None and self.consecutive_losses >= n else 1.0

    def reset(self, breaker: str, now: datetime | None = None,
              config: BreakerConfig | None = None) -> BreakerState:
        """Operator action: clear one breaker by setting its value back to zero (the
        realised totals are history and stay)."""
        if breaker == "daily_loss":
            return self.at(now, config).model_copy(update={"daily_pnl": 0.0})
        if breaker == "loss_streak":
            return self.reset_streak()
        raise ValueError(f"unknown breaker {breaker!r}; expected one of {', '.join(BREAKERS)}")

    def reset_streak(self) -> BreakerState:
        """Operator action: clear the consecutive-loss streak."""
        return self.model_copy(update={"consecutive_losses": 0})
