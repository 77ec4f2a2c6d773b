"""O(1)-per-bar indicators over a sliding window (issue #12), for Joey's detector.

Each indicator keeps running accumulators instead of re-reading the window on every bar:
sliding sums for the SMAs and the volume baseline, a sliding seeded smoother for EMA and
Wilder's RSI/ATR, monotonic deques for the breakout levels. They compute the same quantities
as the reference functions in `indicators.py` (the smoothing seeded at the window's first
value, as there), but by updating rather than recomputing, so the floats differ from the
reference in the last bits. Stated tolerance: relative 1e-9 (tests/unit/test_rolling.py
checks every bar of long random and synthetic feeds). Exact zero tests (a flat market, a zero
volume baseline, no losses) use counts of non-zero terms, so they are decided exactly as by
the reference.

Rounding makes the accumulators depend on the history, not only on the window's contents: a
restarted Joey gets them back from Redis (`snapshot`/`restore`, saved with each bar of the
window) and then continues bit for bit like one that never stopped. The sliding sums are
re-summed exactly (math.fsum) now and then so rounding cannot build up (see RESUM_EVERY).
"""

from __future__ import annotations

import math
from collections import deque

from ark_runtime.market import Bar

# Re-sum exactly after this many updates, or as soon as the running value has shrunk below
# CANCELLED x the largest term added since the last re-sum: then the rounding of that term
# (~1e-16 of it) could be a visible part of what is left. Together they bound the error to
# about RESUM_EVERY * 1.1e-16 / CANCELLED = 1e-10 of the value, well inside the tolerance.
RESUM_EVERY = 1024
CANCELLED = 1e-3


class SlidingSum:
    """Sum of the last `n` values pushed, with how many of them are non-zero."""

    __slots__ = ("buf", "n", "nonzero", "peak", "since", "total")

    def __init__(self, n: int) -> None:
        self.n = n
        self.buf: deque[float] = deque()
        self.total = 0.0
        self.nonzero = 0
        self.since = 0  # pushes since the last exact re-sum
        self.peak = 0.0  # largest |value| added since then

    def push(self, x: float) -> None:
        self.buf.append(x)
        self.total += x
        self.nonzero += x != 0
        self.peak = max(self.peak, abs(x))
        if len(self.buf) > self.n:
            old = self.buf.popleft()
            self.total -= old
            self.nonzero -= old != 0
        self.since += 1
        # (values are >= 0 here: prices and volumes, so the true sum is 0 only when all are)
        if self.since >= RESUM_EVERY or (self.nonzero and
                                         abs(self.total) < self.peak * CANCELLED):
            self.resum()

    def resum(self) -> None:
        self.total, self.since = math.fsum(self.buf), 0
        self.peak = max(map(abs, self.buf), default=0.0)

    def mean(self) -> float | None:
        """Mean of the last n values; 0.0 exactly when they are all zero."""
        if len(self.buf) < self.n:
            return None
        return self.total / self.n if self.nonzero else 0.0


class SeededSmoother:
    """Exponential smoothing (x_k = a*x_{k-1} + c*v_k) over the last `m` values, seeded with
    the mean of the window's first `p` values: Wilder's average (a=(p-1)/p, c=1/p) or the EMA
    (c=2/(p+1), a=1-c) exactly as `indicators._wilder`/`ema` define them, updated in O(1):

        value = a^(L-p) * seed/p + c * tail,  tail = sum over the window's values after the
        seed of a^(age) * v.

    When the window slides, the oldest value leaves the seed and the first tail value joins
    it (its weight a^(m-p-1) is taken out of the tail)."""

    __slots__ = ("a", "buf", "c", "leaving", "m", "nonzero", "p", "peak", "seed",
                 "seed_nonzero", "since", "tail")

    def __init__(self, m: int, p: int, *, ema: bool = False) -> None:
        self.m, self.p = m, p
        self.c = 2.0 / (p + 1) if ema else 1.0 / p
        self.a = 1.0 - self.c if ema else (p - 1) / p
        self.leaving = self.a ** (m - p - 1) if m > p else 0.0
        self.buf: deque[float] = deque()
        self.seed = 0.0
        self.tail = 0.0
        self.nonzero = 0
        self.seed_nonzero = 0  # of the seed's values (the first p)
        self.since = 0
        self.peak = 0.0

    def push(self, v: float) -> None:
        self.nonzero += v != 0
        self.peak = max(self.peak, abs(v))
        if len(self.buf) < self.m:
            if len(self.buf) < self.p:
                self.seed += v
                self.seed_nonzero += v != 0
            else:
                self.tail = self.a * self.tail + v
        else:
            first = self.buf.popleft()
            self.nonzero -= first != 0
            if self.m > self.p:
                joins = self.buf[self.p - 1]  # the tail's oldest value joins the seed
                self.seed += joins - first
                self.seed_nonzero += (joins != 0) - (first != 0)
                self.tail = self.a * (self.tail - self.leaving * joins) + v
            else:
                self.seed += v - first
                self.seed_nonzero += (v != 0) - (first != 0)
        self.buf.append(v)
        self.since += 1
        floor = self.peak * CANCELLED
        tail_nonzero = self.nonzero - self.seed_nonzero
        if self.since >= RESUM_EVERY or (self.seed_nonzero and abs(self.seed) < floor) or \
                (tail_nonzero and abs(self.tail) < floor):
            self.recompute()

    def recompute(self) -> None:
        """Seed and tail from the window's values (O(m)): see RESUM_EVERY."""
        values = list(self.buf)
        self.seed = math.fsum(values[:self.p])
        self.seed_nonzero = sum(v != 0 for v in values[:self.p])
        tail = 0.0
        for v in values[self.p:]:
            tail = self.a * tail + v
        self.tail, self.since = tail, 0
        self.peak = max(map(abs, values), default=0.0)

    def value(self) -> float | None:
        count = len(self.buf)
        if count < self.p or count == 0:
            return None
        if not self.nonzero:
            return 0.0
        return self.a ** (count - self.p) * self.seed / self.p + self.c * self.tail


class SlidingExtreme:
    """Max (or min) of the last `n` values: a monotonic deque, amortised O(1) per value."""

    __slots__ = ("count", "n", "q", "sign")

    def __init__(self, n: int, *, lowest: bool = False) -> None:
        self.n = n
        self.sign = -1.0 if lowest else 1.0
        self.q: deque[tuple[int, float]] = deque()
        self.count = 0

    def push(self, x: float) -> None:
        key = self.sign * x
        while self.q and self.q[-1][1] <= key:
            self.q.pop()
        self.q.append((self.count, key))
        self.count += 1
        while self.q[0][0] <= self.count - 1 - self.n:
            self.q.popleft()

    def value(self) -> float | None:
        return self.sign * self.q[0][1] if self.count >= self.n else None


class SymbolIndicators:
    """One symbol's indicators, updated as each bar arrives (what PatternDetector reads)."""

    def __init__(self, window: int, fast: int, slow: int, lookback: int, volume: int,
                 rsi: int, atr: int) -> None:
        self.sma_fast, self.sma_slow = SlidingSum(fast), SlidingSum(slow)
        self.ema = SeededSmoother(window, fast, ema=True)
        # RSI and ATR smooth the per-bar changes inside the window: one fewer than its bars.
        self.gains = SeededSmoother(window - 1, rsi)
        self.losses = SeededSmoother(window - 1, rsi)
        self.trs = SeededSmoother(window - 1, atr)
        self.volume_base = SlidingSum(volume)  # the volumes before the last bar
        self.highs, self.lows = SlidingExtreme(lookback), SlidingExtreme(lookback, lowest=True)
        self.level_high: float | None = None  # of the `lookback` bars before the last
        self.level_low: float | None = None
        self.prev: Bar | None = None

    def append(self, bar: Bar) -> None:
        prev = self.prev
        if prev is not None:
            change = bar.close - prev.close
            self.gains.push(max(change, 0.0))
            self.losses.push(max(-change, 0.0))
            self.trs.push(max(bar.high - bar.low, abs(bar.high - prev.close),
                              abs(bar.low - prev.close)))
            self.volume_base.push(prev.volume)
        self.level_high, self.level_low = self.highs.value(), self.lows.value()
        self.highs.push(bar.high)
        self.lows.push(bar.low)
        self.sma_fast.push(bar.close)
        self.sma_slow.push(bar.close)
        self.ema.push(bar.close)
        self.prev = bar

    def rsi(self) -> float | None:
        gain, loss = self.gains.value(), self.losses.value()
        if gain is None or loss is None:
            return None
        if loss <= 0:  # exactly 0 when no bar lost; <= guards a rounding residue
            return 100.0 if gain > 0 else 50.0
        return 100.0 - 100.0 / (1.0 + max(gain, 0.0) / loss)

    def atr(self) -> float | None:
        value = self.trs.value()
        return None if value is None else max(value, 0.0)

    def volume_ratio(self) -> float | None:
        baseline = self.volume_base.mean()
        if baseline is None or baseline == 0 or self.prev is None:
            return None
        return self.prev.volume / baseline

    # -- persistence: the accumulators whose rounding depends on the history -------------

    def _accumulators(self) -> list[SlidingSum | SeededSmoother]:
        return [self.sma_fast, self.sma_slow, self.volume_base, self.ema, self.gains,
                self.losses, self.trs]

    def snapshot(self) -> list[float]:
        out: list[float] = []
        for acc in self._accumulators():
            if isinstance(acc, SlidingSum):
                out += [acc.total, acc.since, acc.peak]
            else:
                out += [acc.seed, acc.tail, acc.since, acc.peak]
        return out

    def restore(self, values: list[float]) -> None:
        """Put back a snapshot taken after the same window (ValueError if malformed)."""
        accs = self._accumulators()
        if len(values) != 3 * 3 + 4 * 4 or not all(
                isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise ValueError(f"indicator snapshot has the wrong shape: {values!r:.200}")
        it = iter(values)
        for acc in accs:
            if isinstance(acc, SlidingSum):
                acc.total, acc.since, acc.peak = float(next(it)), int(next(it)), float(next(it))
            else:
                acc.seed, acc.tail = float(next(it)), float(next(it))
                acc.since, acc.peak = int(next(it)), float(next(it))
