"""Paper fills and closes (AGENT_04): the pure logic the executor agent runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ark_runtime.execution.paper import (
    ExecConfig,
    Order,
    PositionClosed,
    PositionFilled,
    SymbolBook,
    session_of,
)
from ark_runtime.market import Bar

pytestmark = pytest.mark.requirement("AGENT_04")

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
NOFRICTION = ExecConfig(slippage_bps=0, fee_bps=0)


def bar(i: int, o: float, h: float, low: float, c: float, symbol: str = "AAPL") -> Bar:
    return Bar(symbol=symbol, ts=T0 + timedelta(minutes=i), open=o, high=h, low=low, close=c,
               volume=1000)


def order(direction: str = "long", stop: float = 95.0, target: float = 110.0, hold: int = 5,
          signal: int = 0, cid: str = "c1") -> Order:
    return Order(correlation_id=cid, symbol="AAPL", direction=direction, stop_loss=stop,
                 target=target, position_size=0.1, quantity=10, hold_bars=hold,
                 signal_ts=T0 + timedelta(minutes=signal))


def run(book: SymbolBook, bars: list[Bar], cfg: ExecConfig = NOFRICTION):
    events = []
    for b in bars:
        book, out = book.on_bar(b, cfg)
        events.extend(out)
    return book, events


def test_fills_at_the_next_bars_open_with_adverse_slippage_and_fee():
    cfg = ExecConfig(slippage_bps=10, fee_bps=5)
    book, events = SymbolBook(symbol="AAPL").on_order(order(), cfg)
    assert events == [] and len(book.orders) == 1
    book, events = run(book, [bar(0, 99, 100, 98, 99), bar(1, 100, 101, 99, 100)], cfg)
    fill = events[0]
    assert isinstance(fill, PositionFilled)
    assert fill.filled_at == T0 + timedelta(minutes=1)  # not the signal bar itself
    assert fill.fill_price == pytest.approx(100 * 1.001)
    assert fill.fee == pytest.approx(0.1 * 5 / 10_000)


def test_stop_exit_loses_the_planned_fraction_and_fees():
    cfg = ExecConfig(slippage_bps=0, fee_bps=10)
    book, _ = SymbolBook(symbol="AAPL").on_order(order(), cfg)
    _, events = run(book, [bar(1, 100, 101, 99, 100), bar(2, 99, 99, 94, 95)], cfg)
    close = events[-1]
    assert isinstance(close, PositionClosed) and close.reason == "stop"
    assert close.exit_price == 95
    fees = 0.1 * 10 / 10_000 + 0.1 * 0.95 * 10 / 10_000
    assert close.pnl == pytest.approx(0.1 * -0.05 - fees)


def test_a_gap_through_the_stop_exits_at_the_open():
    book, _ = SymbolBook(symbol="AAPL").on_order(order(), NOFRICTION)
    _, events = run(book, [bar(1, 100, 101, 99, 100), bar(2, 90, 92, 89, 91)])
    assert events[-1].exit_price == 90 and events[-1].reason == "stop"


def test_short_target_and_both_touched_counts_as_stop():
    book, _ = SymbolBook(symbol="AAPL").on_order(order("short", stop=105, target=90), NOFRICTION)
    _, events = run(book, [bar(1, 100, 101, 99, 100), bar(2, 99, 99, 89, 90)])
    assert events[-1].reason == "target" and events[-1].pnl == pytest.approx(0.01)
    book, _ = SymbolBook(symbol="AAPL").on_order(order("short", stop=105, target=90), NOFRICTION)
    _, events = run(book, [bar(1, 100, 101, 99, 100), bar(2, 99, 106, 89, 90)])
    assert events[-1].reason == "stop"


def test_time_limit_closes_at_the_close_of_the_last_bar_held():
    book, _ = SymbolBook(symbol="AAPL").on_order(order(hold=3), NOFRICTION)
    _, events = run(book, [bar(i, 100, 101, 99, 100 + i / 10) for i in range(1, 6)])
    close = events[-1]
    assert close.reason == "time_limit" and close.bars_held == 3
    assert close.exit_price == pytest.approx(100.3)


def test_session_end_flattens_at_the_last_bar_of_the_session():
    cfg = ExecConfig(slippage_bps=0, fee_bps=0, session_timezone="America/New_York")
    late = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 22:00 New York, March 1
    bars = [Bar(symbol="AAPL", ts=late + timedelta(hours=h), open=100, high=110, low=99,
                close=100 + h, volume=1) for h in range(0, 6)]  # crosses local midnight
    o = order(hold=100, target=120).model_copy(update={"signal_ts": late})
    book, _ = SymbolBook(symbol="AAPL").on_order(o, cfg)
    _, events = run(book, bars, cfg)
    close = events[-1]
    assert close.reason == "session_end"
    assert session_of(close.closed_at, cfg.session_timezone, cfg.session_reset) == "2026-03-01"
    assert close.exit_price == 101  # 23:00 New York, the session's last bar


def test_a_repeated_approval_opens_one_position():
    book, _ = SymbolBook(symbol="AAPL").on_order(order(), NOFRICTION)
    book2, events = book.on_order(order(), NOFRICTION)
    assert book2 == book and events == []
    book, events = run(book, [bar(1, 100, 111, 99, 100)])
    assert [type(e) for e in events] == [PositionFilled, PositionClosed]
    again, events = book.on_order(order(), NOFRICTION)
    assert events == [] and again == book


# -- properties -----------------------------------------------------------------------

@st.composite
def price_paths(draw):
    n = draw(st.integers(min_value=1, max_value=40))
    price = draw(st.floats(min_value=5, max_value=500))
    out = []
    for i in range(n):
        step = draw(st.floats(min_value=-0.08, max_value=0.08))
        o = price
        c = max(0.5, price * (1 + step))
        h = max(o, c) * (1 + draw(st.floats(min_value=0, max_value=0.05)))
        low = min(o, c) * (1 - draw(st.floats(min_value=0, max_value=0.05)))
        out.append(bar(i, o, h, low, c))
        price = c
    return out


@settings(max_examples=200, deadline=None)
@given(path=price_paths(), arrival=st.integers(min_value=0, max_value=40),
       direction=st.sampled_from(["long", "short"]), hold=st.integers(1, 30),
       stop_pct=st.floats(0.005, 0.2), reward=st.floats(0.5, 4),
       slip=st.floats(0, 50), fee=st.floats(0, 50), history=st.integers(41, 64))
def test_the_same_bars_give_the_same_result_whenever_the_approval_arrives(
        path, arrival, direction, hold, stop_pct, reward, slip, fee, history):
    cfg = ExecConfig(slippage_bps=slip, fee_bps=fee, bar_history=history)
    ref = path[0].close
    side = 1 if direction == "long" else -1
    o = order(direction, stop=ref * (1 - side * stop_pct),
              target=ref * (1 + side * stop_pct * reward), hold=hold, signal=0)
    # Reference: the approval arrives before any bar after its signal bar.
    book, events_first = SymbolBook(symbol="AAPL").on_order(o, cfg)
    book, more = run(book, path, cfg)
    events_first += more
    # Any later arrival (a slow HRM, a redelivery after kill -9): the same events.
    k = min(arrival, len(path))
    book2, early = run(SymbolBook(symbol="AAPL"), path[:k], cfg)
    book2, mid = book2.on_order(o, cfg)
    book2, late = run(book2, path[k:], cfg)
    assert early == [] and mid + late == events_first
    fills = [e for e in events_first if isinstance(e, PositionFilled)]
    closes = [e for e in events_first if isinstance(e, PositionClosed)]
    assert len(fills) == (1 if len(path) > 1 else 0) and len(closes) <= 1
    for close in closes:
        assert close.closed_at >= close.filled_at and close.bars_held <= hold
        if close.reason == "stop" and slip + fee > 0:
            assert close.pnl < 0  # a stop out with friction always loses
        if close.reason == "stop":  # never better than the stop level itself
            assert side * (close.exit_price - o.stop_loss) <= 1e-9 * ref
