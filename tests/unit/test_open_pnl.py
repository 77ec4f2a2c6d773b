"""AGENT_04: open P&L, marked to market. The executor's fills, closes and marks (pure paper
logic over random price paths) go through HRM's real handler and store; HRM's open P&L must
equal the figure recomputed here independently from the executor's own books, a close at
the mark must move its amount from open to realised with the total conserved, and a
redelivered message (a kill -9 between the store's commit and the ack) counts nothing twice.
"""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ark_runtime.agents.executor import Executor
from ark_runtime.agents.hrm import Hrm
from ark_runtime.bus.advert import ReaderGate, advertisement, advertises
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.registry import HrmVerdict
from ark_runtime.execution.paper import (
    ExecConfig,
    Order,
    PositionClosed,
    PositionFilled,
    PositionMarked,
    SymbolBook,
    mark_of,
)
from ark_runtime.hrm import Decision, RuleEngine, load_ruleset
from ark_runtime.hrm.open_pnl import OPEN_BOOK_KEY, OpenBook
from ark_runtime.market import Bar
from ark_runtime.planner import TradePlan
from ark_runtime.store import MemoryStore

pytestmark = pytest.mark.requirement("AGENT_04")

T0 = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)  # the path crosses midnight: session ends too


def make_hrm(root: Path) -> Hrm:
    agent = Hrm(env={"ARK_STATE_DIR": str(root)})
    agent.log = logging.getLogger("ark.hrm")
    agent.engine = RuleEngine(load_ruleset())
    agent.store = MemoryStore(root / "memory.db")
    agent.approved = agent.rejected = 0
    agent._batch_breakers = None
    return agent


def reference_open_pnl(books: dict[str, SymbolBook], cfg: ExecConfig) -> float:
    """Written out here, not taken from the product: each open position closed at its
    symbol's last bar close, the exit moved against it by the slippage, both fees paid."""
    total = 0.0
    for book in books.values():
        for pos in book.positions:
            side = 1.0 if pos.order.direction == "long" else -1.0
            exit_price = book.bars[-1].close * (1 - side * cfg.slippage_bps / 10_000)
            gross = pos.order.position_size * side * (exit_price / pos.fill_price - 1)
            exit_fee = pos.order.position_size * exit_price / pos.fill_price * cfg.fee_bps / 1e4
            total += gross - pos.entry_fee - exit_fee
    return total


def stored(hrm: Hrm) -> tuple[float, float]:
    """(open, realised) P&L as HRM's store holds them."""
    book = hrm.store.get_state(OPEN_BOOK_KEY) or {"open_pnl": 0.0}
    return book["open_pnl"], (hrm.store.get_breaker_state() or {}).get("realised_pnl", 0.0)


def published(hrm: Hrm) -> dict:
    import json

    [[verb, _key, doc]] = hrm._writes
    assert verb == "SET"
    return json.loads(doc)


moves = st.lists(st.tuples(st.sampled_from(("AAPL", "MSFT")), st.floats(-0.04, 0.04),
                           st.floats(0, 0.03), st.integers(0, 3)), min_size=3, max_size=24)
orders = st.lists(st.tuples(st.integers(0, 23), st.sampled_from(("long", "short")),
                            st.floats(0.01, 0.2), st.floats(0.01, 0.1), st.integers(1, 8)),
                  max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moves=moves, orders=orders, slippage=st.floats(0, 20), fee=st.floats(0, 10))
def test_open_pnl_is_the_marked_sum_and_closes_conserve_the_total(
        moves, orders, slippage, fee) -> None:
    cfg = ExecConfig(slippage_bps=slippage, fee_bps=fee)
    with tempfile.TemporaryDirectory() as tmp:
        hrm = make_hrm(Path(tmp))
        try:
            _run(hrm, cfg, moves, orders)
        finally:
            hrm.store.close()


def _run(hrm: Hrm, cfg: ExecConfig, moves, orders) -> None:
    books: dict[str, SymbolBook] = {}
    price = {"AAPL": 100.0, "MSFT": 50.0}
    ts = T0
    closes = 0
    last: dict = {}  # the risk state HRM published last

    def deliver(payload, kind: str) -> None:
        nonlocal closes
        env = Envelope.new(kind, payload, from_agent="executor", to_agent="hrm")
        open_before, realised_before = stored(hrm)
        term = 0.0
        if isinstance(payload, PositionClosed):
            view = OpenBook.model_validate({k: v for k, v in
                                            hrm.store.get_state(OPEN_BOOK_KEY).items()
                                            if k != "open_pnl"})
            term = view.position_pnl(view.fills[payload.correlation_id])
        hrm.handle(env)
        last.update(published(hrm))
        after = stored(hrm)
        hrm.handle(env)  # redelivered (crash before the ack): the store's mark holds it
        assert stored(hrm) == after
        open_after, realised_after = after
        if isinstance(payload, PositionClosed):
            closes += 1
            event(f"close: {payload.reason}")
            # The position's marked term leaves open P&L, its realised P&L arrives.
            assert realised_after - realised_before == pytest.approx(payload.pnl, abs=1e-12)
            assert open_before - open_after == pytest.approx(term, abs=1e-12)
            if payload.reason == "session_end":  # closed at the close it was last marked at
                assert open_after + realised_after == pytest.approx(
                    open_before + realised_before, abs=1e-12)

    def emit(book: SymbolBook, events, moved: bool) -> None:
        for result in events:
            kind = "position.closed" if isinstance(result, PositionClosed) else "position.filled"
            deliver(result, kind)
        mark = mark_of(book, cfg) if moved else None
        if mark is not None:
            deliver(mark, "position.marked")

    for step, (symbol, change, spread, gap_hours) in enumerate(moves):
        for k, (at, side, size, dist, hold) in enumerate(orders):
            if at != step:
                continue
            book = books.get(symbol) or SymbolBook(symbol=symbol)
            level = price[symbol]
            stop, target = ((level * (1 - dist), level * (1 + dist)) if side == "long"
                            else (level * (1 + dist), level * (1 - dist)))
            order = Order(correlation_id=f"c{k}", symbol=symbol, direction=side,
                          stop_loss=stop, target=target, position_size=size, quantity=1,
                          hold_bars=hold, signal_ts=book.bars[-1].ts if book.bars else ts)
            book, events = book.on_order(order, cfg)
            books[symbol] = book
            emit(book, events, bool(events))
        ts += timedelta(minutes=30, hours=gap_hours)
        o = price[symbol]
        c = o * (1 + change)
        price[symbol] = c
        bar = Bar(symbol=symbol, ts=ts, open=o, high=max(o, c) * (1 + spread),
                  low=min(o, c) * (1 - spread), close=c, volume=1e6)
        before = books.get(symbol) or SymbolBook(symbol=symbol)
        book, events = before.on_bar(bar, cfg)
        books[symbol] = book
        emit(book, events, True)
        open_now, _realised = stored(hrm)
        assert open_now == pytest.approx(reference_open_pnl(books, cfg), abs=1e-12)
        if last:
            assert last["open_pnl"] == pytest.approx(open_now, abs=1e-15)
    # Every close counted once, and the totals are the executor's.
    state = hrm.store.get_breaker_state() or {"positions_closed": 0}
    assert state["positions_closed"] == closes


def test_an_older_mark_after_a_newer_one_changes_nothing() -> None:
    fill = PositionFilled(correlation_id="c", symbol="AAPL", direction="long", fill_price=100,
                          quantity=1, position_size=0.1, stop_loss=90, target=110, fee=1e-5,
                          filled_at=T0)
    book = OpenBook().on_fill(fill)

    def mark(price: float, minutes: int) -> PositionMarked:
        return PositionMarked(symbol="AAPL", price=price, marked_at=T0 + timedelta(
            minutes=minutes), slippage_bps=0, fee_bps=0, open_positions=1)

    newer = book.on_mark(mark(110, 2))
    assert newer.open_pnl() == pytest.approx(0.1 * 0.1 - 1e-5)
    assert newer.on_mark(mark(90, 1)) == newer
    assert book.open_pnl() == -1e-5  # filled, not marked yet: its entry fee
    assert newer.marked_at() == (T0 + timedelta(minutes=2)).isoformat()


def test_a_short_gains_when_the_mark_falls() -> None:
    fill = PositionFilled(correlation_id="s", symbol="MSFT", direction="short", fill_price=50,
                          quantity=1, position_size=0.2, stop_loss=55, target=45, fee=0,
                          filled_at=T0)
    book = OpenBook().on_fill(fill).on_mark(PositionMarked(
        symbol="MSFT", price=45, marked_at=T0, slippage_bps=0, fee_bps=0, open_positions=1))
    assert book.open_pnl() == pytest.approx(0.2 * 0.1)


def make_executor(fetch=advertisement, clock=None) -> Executor:
    """An executor whose gate reads HRM's advertisement through `fetch` (default: what this
    release's HRM advertises)."""
    executor = Executor(env={})
    executor.exec_config = ExecConfig(slippage_bps=0, fee_bps=1)
    executor.books, executor._writes, executor.books_key = {}, [], "books"
    executor.filled = executor.closed = 0
    executor.mark_gate = ReaderGate(fetch, **({"clock": clock} if clock else {}))
    return executor


def approval() -> Envelope:
    plan = TradePlan(symbol="AAPL", direction="long", entry=100, stop_loss=90, target=120,
                     position_size=0.1, quantity=10, risk_reward=2, max_loss=0.01, atr=2,
                     atr_pct=0.02, price=100, avg_volume=1e6, confidence=0.9,
                     pattern="breakout", pattern_ts=T0, hold_bars=20)
    verdict = HrmVerdict(symbol="AAPL", plan=plan, decision=Decision(
        approved=True, violations=[], ruleset_version="t", evaluated_at=T0))
    return Envelope.new("trade.approved", verdict, from_agent="hrm", to_agent="executor")


def bar(minutes: int, close: float, symbol: str = "AAPL") -> Envelope:
    return Envelope.new("market.bar", Bar(
        symbol=symbol, ts=T0 + timedelta(minutes=minutes), open=100, high=close + 1, low=99,
        close=close, volume=1e6), from_agent="kyle", to_agent="executor")


def test_the_executor_marks_a_symbol_only_while_it_holds_positions_in_it() -> None:
    executor = make_executor()
    assert executor.handle(bar(0, 100)) == []  # nothing open: no mark
    assert executor.handle(approval()) == []  # waits for its fill
    outputs = executor.handle(bar(1, 100.5))
    assert [env.type for _s, env in outputs] == \
        ["position.filled", "position.filled", "position.marked"]
    stream, marked = outputs[-1]
    assert stream == "ark:stream:hrm" and marked.payload["price"] == 100.5
    assert marked.payload["open_positions"] == 1 and marked.payload["fee_bps"] == 1
    again = bar(2, 100.7)
    [(_s, m2)] = executor.handle(again)
    assert m2.payload["price"] == 100.7
    assert executor.handle(again) == []  # a replayed bar moves nothing: no new mark
    assert executor.handle(bar(3, 100, symbol="MSFT")) == []  # no position in MSFT


def test_the_executor_marks_only_while_hrm_advertises_marks() -> None:
    """An HRM of the release before (no advertisement) would dead-letter every mark: none is
    sent, fills still are; once HRM advertises marks, the next bar (after the gate's cache)
    marks, and that mark supersedes every skipped one."""
    now, ad = [0.0], {"hrm": None}
    executor = make_executor(fetch=lambda agent: ad[agent], clock=lambda: now[0])
    executor.handle(approval())
    outputs = executor.handle(bar(1, 100.5))
    assert [env.type for _s, env in outputs] == ["position.filled", "position.filled"]
    assert executor.handle(bar(2, 100.7)) == []  # held, but HRM does not read marks
    ad["hrm"] = advertisement("hrm")  # HRM upgraded: the gate's cache still says no
    assert executor.handle(bar(3, 100.8)) == []
    now[0] = 5.0
    [(_s, marked)] = executor.handle(bar(4, 101.0))
    assert marked.type == "position.marked" and marked.payload["price"] == 101.0
    ad["hrm"] = advertisement("executor")  # an advertisement without marks: none again
    now[0] = 10.0
    assert executor.handle(bar(5, 101.1)) == []


@given(st.one_of(st.none(), st.text(), st.binary(),
                 st.dictionaries(st.text(), st.lists(st.integers())).map(
                     lambda types: json.dumps({"types": types}))))
def test_any_advertisement_is_read_without_error_and_lists_marks_only_when_it_says_so(
        raw) -> None:
    listed = advertises(raw, "position.marked")
    assert listed is False or "position.marked" in str(raw)


def test_this_release_hrm_advertises_what_its_inbox_carries() -> None:
    ad = advertisement("hrm")
    for message_type in ("trade.plan", "position.filled", "position.closed",
                         "position.marked"):
        assert advertises(ad, message_type)
    assert not advertises(ad, "market.bar")
    assert not advertises(ad, "position.marked", version=99)


def test_the_exporter_reports_open_pnl_only_when_hrm_published_it() -> None:
    from ark_runtime.hrm.breakers import BreakerState
    from ark_runtime.hrm.risk import risk_state
    from ark_runtime.metrics.breakers import risk_metrics

    rs = load_ruleset()
    doc = risk_state(BreakerState(), rs.breakers, rs.exposure, {"AAPL": 0.1}, 1, T0,
                     rs.version, open_pnl=-0.0042, marked_at=T0.isoformat())
    gauges = {m.name: m for m in risk_metrics(doc)}
    assert gauges["ark_hrm_open_pnl"].samples[0].value == -0.0042
    assert doc["marked_at"] == T0.isoformat()
    del doc["open_pnl"]  # a document from an HRM older than the figure: no series, not 0
    assert "ark_hrm_open_pnl" not in {m.name for m in risk_metrics(doc)}
