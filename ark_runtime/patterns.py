"""Joey's pattern detection: breakouts and moving-average crosses, with a confidence score.

`PatternDetector.update(bar)` folds one bar into the symbol's rolling window and returns the
patterns that bar completes. Confidence is derived from how strong the signal is (how far
past the level, how much volume, how aligned momentum is), not a constant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ark_runtime import indicators as ind
from ark_runtime.market import Bar
from ark_runtime.rolling import SymbolIndicators
from ark_runtime.validators import Symbol, UtcTime

__all__ = ["Pattern", "PatternDetector"]

PatternKind = Literal["breakout", "ma_cross"]
Direction = Literal["long", "short"]


class Pattern(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: Symbol
    kind: PatternKind
    direction: Direction
    confidence: float = Field(ge=0.0, le=1.0)
    price: float = Field(gt=0)
    ts: UtcTime
    # sma_fast, sma_slow, ema, rsi, atr, atr_pct, avg_volume, volume_ratio
    indicators: dict[str, float]




def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _clamp(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return max(lo, min(hi, x))


class PatternDetector:
    """Rolling-window detector. Parameters are bar counts."""

    def __init__(
        self,
        window: int = 60,
        fast: int = 10,
        slow: int = 30,
        breakout_lookback: int = 20,
        volume_period: int = 20,
        rsi_period: int = 14,
        atr_period: int = 14,
        min_volume_ratio: float = 1.5,
        min_cross_atr: float = 0.1,
    ) -> None:
        if not 1 <= fast < slow:
            raise ValueError("need 1 <= fast < slow")
        needed = max(
            slow + 1, breakout_lookback + 1, volume_period + 1, rsi_period + 1, atr_period + 1
        )
        if window < needed:
            raise ValueError(f"window {window} is too small for these periods (need {needed})")
        self.window = ind.RollingWindow(window, lambda: SymbolIndicators(
            window, fast, slow, breakout_lookback, volume_period, rsi_period, atr_period))
        self.fast, self.slow = fast, slow
        self.breakout_lookback = breakout_lookback
        self.volume_period = volume_period
        self.rsi_period, self.atr_period = rsi_period, atr_period
        self.min_volume_ratio = min_volume_ratio
        self.min_cross_atr = min_cross_atr
        self._side: dict[str, int] = {}  # confirmed sign of sma_fast - sma_slow per symbol
        self.stale = 0  # bars ignored because they were not newer than the last one seen
        self._needed = needed

    # The MA-cross hysteresis is state a restarted detector must get back (with its
    # window) or it misses the next cross: Joey persists it through these two.
    def cross_side(self, symbol: str) -> int | None:
        """Confirmed sign of sma_fast - sma_slow for `symbol` (None before the first)."""
        return self._side.get(symbol)

    def restore_cross_side(self, symbol: str, side: int) -> None:
        if side not in (-1, 1):
            raise ValueError(f"cross side must be -1 or 1, got {side!r}")
        self._side[symbol] = side

    def update(self, bar: Bar) -> list[Pattern]:
        last = self.window.last(bar.symbol)
        if last is not None and bar.ts <= last.ts:
            # A redelivered or out-of-order bar must not produce a second signal.
            self.stale += 1
            return []
        if len(self.window.add(bar)) < self._needed:
            return []
        state = self.indicators_of(bar.symbol)
        values = self._indicators(state, bar.close)
        if values is None:
            return []
        found: list[Pattern] = []
        breakout = self._breakout(bar, state, values)
        if breakout:
            found.append(breakout)
        cross = self._ma_cross(bar, values)
        if cross:
            found.append(cross)
        return found

    def indicators_of(self, symbol: str) -> SymbolIndicators:
        """The symbol's O(1) indicator state (KeyError before its first bar)."""
        state = self.window.state(symbol)
        assert isinstance(state, SymbolIndicators)
        return state

    # A restarted Joey restores the window's bars and then these accumulators, so it goes on
    # bit for bit like a detector that never stopped (see rolling.py on rounding).
    def snapshot(self, symbol: str) -> dict[str, object]:
        """The symbol's last bar time and accumulators (JSON-encodable with msgspec; for the
        standard json module, turn `ts` into text first)."""
        last = self.window.last(symbol)
        assert last is not None
        return {"ts": last.ts, "acc": self.indicators_of(symbol).snapshot()}

    def restore_snapshot(self, symbol: str, saved: dict[str, object]) -> None:
        """ValueError when it does not belong to the restored window (then the window's own
        accumulators stay: equal to the reference within the stated tolerance)."""
        last = self.window.last(symbol)
        if last is None or not isinstance(saved, dict) or _time(saved.get("ts")) != last.ts:
            raise ValueError(f"indicator snapshot of {symbol} is not for its saved window")
        acc = saved.get("acc")
        if not isinstance(acc, list):
            raise ValueError(f"indicator snapshot of {symbol} has no accumulators")
        self.indicators_of(symbol).restore(acc)

    def _indicators(self, state: SymbolIndicators, price: float) -> dict[str, float] | None:
        # O(1): every value is kept up to date by SymbolIndicators as bars arrive.
        values = {
            "sma_fast": state.sma_fast.mean(),
            "sma_slow": state.sma_slow.mean(),
            "ema": state.ema.value(),
            "rsi": state.rsi(),
            "atr": state.atr(),
            "avg_volume": state.volume_base.mean(),
            "volume_ratio": state.volume_ratio(),
        }
        if any(v is None for v in values.values()):
            return None  # e.g. zero baseline volume: no trustworthy signal
        out = {k: float(v) for k, v in values.items() if v is not None}
        if out["atr"] <= 0:
            return None  # a perfectly flat market: stops and strengths are undefined
        out["atr_pct"] = out["atr"] / price
        return out

    def _confidence(
        self, excess_atr: float, values: dict[str, float], direction: Direction, base: float
    ) -> float:
        # Three strength components, each in [0, 1]:
        #  - distance past the level in ATRs (1 ATR past = full marks),
        #  - volume confirmation (2.5x average = full marks),
        #  - momentum agreement (RSI on the trade's side of 50, up to 70/30).
        distance = _clamp(excess_atr)
        volume = _clamp((values["volume_ratio"] - 1.0) / 1.5)
        rsi = values["rsi"]
        momentum = _clamp((rsi - 50) / 20) if direction == "long" else _clamp((50 - rsi) / 20)
        return round(_clamp(base + 0.2 * distance + 0.2 * volume + 0.15 * momentum), 4)

    def _breakout(self, bar: Bar, state: SymbolIndicators,
                  values: dict[str, float]) -> Pattern | None:
        level_high, level_low = state.level_high, state.level_low
        assert level_high is not None and level_low is not None  # window >= lookback + 1
        if values["volume_ratio"] < self.min_volume_ratio:
            return None  # a breakout without volume is usually noise
        if bar.close > level_high:
            direction: Direction = "long"
            excess = (bar.close - level_high) / values["atr"]
        elif bar.close < level_low:
            direction = "short"
            excess = (level_low - bar.close) / values["atr"]
        else:
            return None
        return Pattern(
            symbol=bar.symbol,
            kind="breakout",
            direction=direction,
            confidence=self._confidence(excess, values, direction, base=0.4),
            price=bar.close,
            ts=bar.ts,
            indicators=values,
        )

    def _ma_cross(self, bar: Bar, values: dict[str, float]) -> Pattern | None:
        # Hysteresis: the fast/slow order only counts once the gap exceeds min_cross_atr ATRs,
        # and a cross fires when that confirmed order flips. Without it a sideways market
        # whipsaws the averages and "crosses" every bar.
        gap = values["sma_fast"] - values["sma_slow"]
        if abs(gap) < self.min_cross_atr * values["atr"]:
            return None
        side = 1 if gap > 0 else -1
        previous = self._side.get(bar.symbol)
        self._side[bar.symbol] = side
        if previous is None or previous == side:
            return None
        direction: Direction = "long" if side > 0 else "short"
        # Strength: the gap in ATRs (half an ATR between the averages counts as decisive).
        separation = abs(gap) / values["atr"] * 2
        return Pattern(
            symbol=bar.symbol,
            kind="ma_cross",
            direction=direction,
            confidence=self._confidence(separation, values, direction, base=0.3),
            price=bar.close,
            ts=bar.ts,
            indicators=values,
        )
