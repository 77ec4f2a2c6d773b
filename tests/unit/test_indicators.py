"""Joey's indicators against values computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ark_runtime import indicators as ind
from ark_runtime.market import Bar


def test_sma() -> None:
    assert ind.sma([1, 2, 3, 4, 5], 3) == pytest.approx(4.0)
    assert ind.sma([1, 2], 3) is None


def test_ema_seeded_with_sma() -> None:
    # alpha = 0.5; seed mean(2,4,6)=4; 8 -> 6; 12 -> 9
    assert ind.ema([2, 4, 6, 8, 12], 3) == pytest.approx(9.0)
    assert ind.ema([2, 4, 6], 3) == pytest.approx(4.0)
    assert ind.ema([2, 4], 3) is None


def test_rsi_wilder() -> None:
    # changes +1,-1,+2,+1; gains seed (1+0+2)/3=1 -> (1*2+1)/3=1;
    # losses seed 1/3 -> (1/3*2+0)/3=2/9; RS=4.5; RSI=100-100/5.5
    assert ind.rsi([10, 11, 10, 12, 13], 3) == pytest.approx(100 - 100 / 5.5)
    assert ind.rsi([10, 11, 10], 3) is None


def test_rsi_extremes() -> None:
    assert ind.rsi([1, 2, 3, 4, 5], 3) == 100.0
    assert ind.rsi([5, 4, 3, 2, 1], 3) == pytest.approx(0.0)
    assert ind.rsi([3, 3, 3, 3], 3) == 50.0


def test_true_range_and_atr_wilder() -> None:
    highs, lows, closes = [10, 12, 11, 13], [8, 9, 9, 10], [9, 11, 10, 12]
    # TRs: max(3,3,0)=3, max(2,0,2)=2, max(3,3,0)=3
    assert ind.true_ranges(highs, lows, closes) == [3, 2, 3]
    # seed (3+2)/2 = 2.5; then (2.5*1 + 3)/2 = 2.75
    assert ind.atr(highs, lows, closes, 2) == pytest.approx(2.75)
    assert ind.atr(highs[:2], lows[:2], closes[:2], 2) is None


def test_true_range_gap_uses_previous_close() -> None:
    # gap up: H-L is 1 but the move from the previous close is 5
    assert ind.true_ranges([10, 16], [9, 15], [10, 15.5]) == [6]


def test_true_range_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        ind.true_ranges([1, 2], [1], [1, 2])


def test_volume_ratio_excludes_current_bar_from_baseline() -> None:
    assert ind.volume_ratio([100, 200, 300, 600], 3) == pytest.approx(3.0)
    assert ind.volume_ratio([0, 0, 0, 10], 3) is None
    assert ind.volume_ratio([100, 200, 300], 3) is None
    assert ind.avg_volume([100, 200, 300, 600], 3) == pytest.approx(1100 / 3)


def test_bad_period() -> None:
    with pytest.raises(ValueError, match="period"):
        ind.sma([1, 2], 0)


def _bar(i: int, symbol: str = "AAPL") -> Bar:
    return Bar(
        symbol=symbol,
        ts=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
        open=10,
        high=11,
        low=9,
        close=10,
        volume=i,
    )


def test_rolling_window_bounded_per_symbol() -> None:
    w = ind.RollingWindow(3)
    for i in range(5):
        w.add(_bar(i))
    w.add(_bar(0, "BTC-USD"))
    assert [b.volume for b in w.bars("AAPL")] == [2, 3, 4]
    assert len(w.bars("BTC-USD")) == 1
    assert w.symbols() == ["AAPL", "BTC-USD"]
    assert w.bars("NONE") == []


def test_rolling_window_refuses_out_of_order() -> None:
    w = ind.RollingWindow(3)
    w.add(_bar(5))
    with pytest.raises(ValueError, match="not after"):
        w.add(_bar(5))


# -- the per-bar terms kept incrementally (Columns) against the reference functions -------
# Tolerance: none. The incremental path applies the reference formulas to the same floats in
# the same order, so the results must be identical floats, not merely close.

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ark_runtime.patterns import PatternDetector  # noqa: E402

_price = st.floats(min_value=1.0, max_value=1e5, allow_nan=False, allow_infinity=False)


@st.composite
def bar_series(draw: st.DrawFn) -> list[Bar]:
    n = draw(st.integers(min_value=2, max_value=90))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        low, span = draw(_price), draw(st.floats(min_value=0.0, max_value=50.0))
        high = low + span
        close = draw(st.floats(min_value=low, max_value=high))
        out.append(Bar(symbol="AAPL", ts=start + timedelta(minutes=i), open=close, high=high,
                       low=low, close=close, volume=draw(st.floats(0.0, 1e7))))
    return out


@settings(max_examples=150, deadline=None)
@given(bars=bar_series(), size=st.integers(min_value=2, max_value=40),
       period=st.integers(min_value=1, max_value=20))
def test_incremental_rsi_atr_match_reference_on_every_bar(bars: list[Bar], size: int,
                                                          period: int) -> None:
    window = ind.RollingWindow(size)
    for bar in bars:
        window.add(bar)
        kept = window.bars("AAPL")
        closes = [b.close for b in kept]
        cols = window.columns("AAPL")
        assert cols.rsi_of(period) == ind.rsi(closes, period)
        assert cols.atr_of(period) == ind.atr([b.high for b in kept], [b.low for b in kept],
                                              closes, period)


@settings(max_examples=60, deadline=None)
@given(bars=bar_series(), cut=st.integers(min_value=0, max_value=90))
def test_restored_window_gives_the_same_indicators(bars: list[Bar], cut: int) -> None:
    # Joey restores a window from its saved bars only: the incremental terms must not depend
    # on what came before the window.
    live = ind.RollingWindow(30)
    for bar in bars:
        live.add(bar)
    restored = ind.RollingWindow(30)
    saved = live.bars("AAPL")
    for bar in saved[cut % len(saved):]:  # any suffix of the saved window
        restored.add(bar)
    kept = restored.bars("AAPL")
    closes = [b.close for b in kept]
    assert restored.columns("AAPL").rsi_of(14) == ind.rsi(closes, 14)
    assert restored.columns("AAPL").atr_of(14) == ind.atr(
        [b.high for b in kept], [b.low for b in kept], closes, 14)


def test_detector_matches_a_from_scratch_reference() -> None:
    # The whole detector against the pre-incremental computation (lists rebuilt from the
    # bars, reference rsi/atr) over a long synthetic feed: same indicator values bar by bar.
    from ark_runtime.market import SyntheticAdapter

    detector = PatternDetector()
    for bar in SyntheticAdapter(["AAPL", "MSFT"], seed=3, bars=400):
        detector.update(bar)
        kept = detector.window.bars(bar.symbol)
        if len(kept) < 31:
            continue
        closes = [b.close for b in kept]
        got = detector._indicators(detector.window.columns(bar.symbol))
        want_rsi = ind.rsi(closes, 14)
        want_atr = ind.atr([b.high for b in kept], [b.low for b in kept], closes, 14)
        if got is not None:
            assert (got["rsi"], got["atr"]) == (want_rsi, want_atr)
