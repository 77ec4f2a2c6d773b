"""Joey's pattern detector: breakouts, MA crosses and how confidence follows strength."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ark_runtime.market import Bar, SyntheticAdapter
from ark_runtime.patterns import Pattern, PatternDetector

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
KEYS = {"sma_fast", "sma_slow", "ema", "rsi", "atr", "atr_pct", "avg_volume", "volume_ratio"}


def make_bars(series: list[tuple[float, float]], symbol: str = "AAPL") -> list[Bar]:
    out, prev = [], series[0][0]
    for i, (close, volume) in enumerate(series):
        out.append(
            Bar(
                symbol=symbol,
                ts=T0 + timedelta(minutes=i),
                open=prev,
                high=max(prev, close) + 0.05,
                low=min(prev, close) - 0.05,
                close=close,
                volume=volume,
            )
        )
        prev = close
    return out


def small() -> PatternDetector:
    return PatternDetector(
        window=12, fast=3, slow=5, breakout_lookback=5, volume_period=5, rsi_period=3, atr_period=3
    )


def feed(detector: PatternDetector, bars: list[Bar]) -> list[Pattern]:
    found: list[Pattern] = []
    for b in bars:
        found.extend(detector.update(b))
    return found


RANGE = [(10.0 + (0.2 if i % 2 else 0.0), 1000.0) for i in range(10)]


def test_breakout_long_with_volume() -> None:
    d = small()
    assert feed(d, make_bars(RANGE)) == []
    found = d.update(make_bars(RANGE + [(11.0, 3000.0)])[-1])
    breakouts = [p for p in found if p.kind == "breakout"]
    assert len(breakouts) == 1
    p = breakouts[0]
    assert (p.symbol, p.direction, p.price) == ("AAPL", "long", 11.0)
    assert set(p.indicators) == KEYS
    assert p.indicators["volume_ratio"] == pytest.approx(3.0)
    assert p.indicators["atr_pct"] == pytest.approx(p.indicators["atr"] / 11.0)
    assert p.indicators["avg_volume"] == pytest.approx(1000.0)
    assert 0 <= p.confidence <= 1


def test_breakout_short() -> None:
    d = small()
    found = feed(d, make_bars(RANGE + [(9.0, 3000.0)]))
    assert [(p.kind, p.direction) for p in found if p.kind == "breakout"] == [("breakout", "short")]


def test_no_breakout_without_volume_confirmation() -> None:
    found = feed(small(), make_bars(RANGE + [(11.0, 1000.0)]))
    assert [p for p in found if p.kind == "breakout"] == []


def test_no_breakout_inside_range() -> None:
    found = feed(small(), make_bars(RANGE + [(10.1, 5000.0)]))
    assert [p for p in found if p.kind == "breakout"] == []


def test_confidence_grows_with_strength() -> None:
    weak = [p for p in feed(small(), make_bars(RANGE + [(10.35, 1600.0)])) if p.kind == "breakout"]
    strong = [p for p in feed(small(), make_bars(RANGE + [(11.5, 4000.0)])) if p.kind == "breakout"]
    assert weak and strong
    assert strong[0].confidence > weak[0].confidence


def test_ma_cross_up_and_down() -> None:
    down = [(10.0 - 0.1 * i, 1000.0) for i in range(8)]
    up = [(9.3 + 0.3 * i, 1000.0) for i in range(1, 6)]
    found = feed(small(), make_bars(down + up))
    crosses = [p for p in found if p.kind == "ma_cross"]
    assert crosses and crosses[0].direction == "long"
    assert len(crosses) == 1  # a cross fires once, not on every bar above
    back = [(crosses[0].price - 0.4 * i, 1000.0) for i in range(1, 6)]
    found2 = feed(small(), make_bars(down + up + back))
    assert [p.direction for p in found2 if p.kind == "ma_cross"] == ["long", "short"]


def test_warmup_emits_nothing() -> None:
    d = small()
    bars = make_bars([(10 + i, 5000.0 * (i + 1)) for i in range(5)])
    assert feed(d, bars) == []


def test_redelivered_bar_ignored() -> None:
    d = small()
    bars = make_bars(RANGE + [(11.0, 3000.0)])
    first = feed(d, bars)
    assert first
    assert d.update(bars[-1]) == []
    assert d.stale == 1


def test_symbols_are_independent() -> None:
    d = small()
    a = make_bars(RANGE + [(11.0, 3000.0)], "AAPL")
    b = make_bars(RANGE, "BTC-USD")
    found = []
    for x, y in zip(a, b + [None], strict=True):
        found += d.update(x)
        if y:
            found += d.update(y)
    assert {p.symbol for p in found} == {"AAPL"}


def test_flat_market_emits_nothing() -> None:
    bars = [
        Bar(
            symbol="AAPL",
            ts=T0 + timedelta(minutes=i),
            open=10,
            high=10,
            low=10,
            close=10,
            volume=1000,
        )
        for i in range(20)
    ]
    assert feed(small(), bars) == []


def test_window_too_small_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        PatternDetector(window=10, slow=30)
    with pytest.raises(ValueError, match="fast < slow"):
        PatternDetector(fast=30, slow=10)


def test_synthetic_feed_produces_both_kinds_and_spread_of_confidence() -> None:
    d = PatternDetector()
    found = feed(d, list(SyntheticAdapter(["AAPL", "BTC-USD"], seed=1, bars=300)))
    assert {p.kind for p in found} == {"breakout", "ma_cross"}
    confidences = [p.confidence for p in found]
    assert min(confidences) < 0.65 < max(confidences)


def test_cross_side_round_trips_and_refuses_nonsense() -> None:
    detector = PatternDetector()
    assert detector.cross_side("AAPL") is None
    detector.restore_cross_side("AAPL", -1)
    assert detector.cross_side("AAPL") == -1
    with pytest.raises(ValueError, match="-1 or 1"):
        detector.restore_cross_side("AAPL", 0)
