"""Technical indicators for Joey, over a bounded rolling window per symbol.

Pure functions over sequences (easy to check by hand: the reference the O(1) indicators in
`rolling.py` are tested against) plus `RollingWindow`, which keeps the last N bars of each
symbol so memory stays bounded however long the feed runs.
A function returns None when there is not yet enough data: no indicator is ever guessed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from ark_runtime.market import Bar

__all__ = [
    "RollingWindow",
    "atr",
    "avg_volume",
    "ema",
    "rsi",
    "sma",
    "true_ranges",
    "volume_ratio",
]


def sma(values: Sequence[float], period: int) -> float | None:
    """Mean of the last `period` values."""
    _check_period(period)
    if len(values) < period:
        return None
    return sum(values[-period:]) / period


def ema(values: Sequence[float], period: int) -> float | None:
    """EMA with alpha = 2/(period+1), seeded with the SMA of the first `period` values
    (the usual convention, so the result does not depend on an arbitrary first value)."""
    _check_period(period)
    if len(values) < period:
        return None
    alpha = 2.0 / (period + 1)
    value = sum(values[:period]) / period
    for x in values[period:]:
        value = alpha * x + (1 - alpha) * value
    return value


def _wilder(values: Sequence[float], period: int) -> float:
    # Wilder's smoothing: seed with the simple mean, then avg = (avg*(n-1) + x) / n.
    avg = sum(values[:period]) / period
    for x in values[period:]:
        avg = (avg * (period - 1) + x) / period
    return avg


def rsi(closes: Sequence[float], period: int = 14) -> float | None:
    """Wilder's RSI in [0, 100]; needs period+1 closes (period changes)."""
    _check_period(period)
    if len(closes) < period + 1:
        return None
    changes = [b - a for a, b in zip(closes, closes[1:], strict=False)]
    avg_gain = _wilder([max(c, 0.0) for c in changes], period)
    avg_loss = _wilder([max(-c, 0.0) for c in changes], period)
    if avg_loss == 0:
        return 100.0 if avg_gain > 0 else 50.0  # flat series: neither overbought nor sold
    rs = avg_gain / avg_loss
    return 100.0 - 100.0 / (1.0 + rs)


def true_ranges(
    highs: Sequence[float], lows: Sequence[float], closes: Sequence[float]
) -> list[float]:
    """True range of each bar after the first: max(H-L, |H-prevC|, |L-prevC|)."""
    if not (len(highs) == len(lows) == len(closes)):
        raise ValueError("highs, lows and closes must have the same length")
    return [
        max(highs[i] - lows[i], abs(highs[i] - closes[i - 1]), abs(lows[i] - closes[i - 1]))
        for i in range(1, len(closes))
    ]


def atr(
    highs: Sequence[float], lows: Sequence[float], closes: Sequence[float], period: int = 14
) -> float | None:
    """Wilder's ATR; needs period+1 bars (each TR needs the previous close)."""
    _check_period(period)
    trs = true_ranges(highs, lows, closes)
    if len(trs) < period:
        return None
    return _wilder(trs, period)


def avg_volume(volumes: Sequence[float], period: int) -> float | None:
    return sma(volumes, period)


def volume_ratio(volumes: Sequence[float], period: int) -> float | None:
    """Last volume over the mean of the `period` volumes before it (excluding the last, so
    a spike does not dilute its own baseline)."""
    _check_period(period)
    if len(volumes) < period + 1:
        return None
    baseline = sum(volumes[-period - 1 : -1]) / period
    if baseline == 0:
        return None
    return volumes[-1] / baseline


def _check_period(period: int) -> None:
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")


class BarState(Protocol):
    """Per-symbol state kept up to date with the window (e.g. rolling.SymbolIndicators)."""

    def append(self, bar: Bar) -> None: ...


class RollingWindow:
    """The last `size` bars per symbol, plus an optional per-symbol state fed every bar.
    Bars must arrive in time order per symbol."""

    def __init__(self, size: int, state: Callable[[], BarState] | None = None) -> None:
        if size < 2:
            raise ValueError("window size must be >= 2")
        self.size = size
        self._bars: dict[str, deque[Bar]] = {}
        self._make_state = state
        self._states: dict[str, BarState] = {}

    def add(self, bar: Bar) -> deque[Bar]:
        bars = self._bars.get(bar.symbol)
        if bars is None:
            bars = self._bars[bar.symbol] = deque(maxlen=self.size)
            if self._make_state is not None:
                self._states[bar.symbol] = self._make_state()
        if bars and bar.ts <= bars[-1].ts:
            raise ValueError(
                f"{bar.symbol}: bar at {bar.ts.isoformat()} is not after {bars[-1].ts.isoformat()}"
            )
        bars.append(bar)
        if self._make_state is not None:
            self._states[bar.symbol].append(bar)
        return bars

    def last(self, symbol: str) -> Bar | None:
        bars = self._bars.get(symbol)
        return bars[-1] if bars else None

    def state(self, symbol: str) -> BarState:
        return self._states[symbol]

    def bars(self, symbol: str) -> list[Bar]:
        return list(self._bars.get(symbol, ()))

    def count(self, symbol: str) -> int:
        return len(self._bars.get(symbol, ()))

    def symbols(self) -> list[str]:
        return sorted(self._bars)

    def __len__(self) -> int:
        return len(self._bars)
