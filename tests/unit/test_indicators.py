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

