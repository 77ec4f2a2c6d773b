"""Issue #23 §3: the executor encodes each bar of a book once (BookJson); the book it writes
is byte for byte `model_dump_json()`, whatever the book holds, for books of several symbols
written in turn."""

from __future__ import annotations

from ark_runtime.agents.executor import BookJson
from ark_runtime.execution.paper import ExecConfig, Order, SymbolBook
from ark_runtime.market import SyntheticAdapter


def _order(symbol: str, signal_ts, n: int) -> Order:
    return Order(correlation_id=f"flow-{symbol}-{n}", symbol=symbol, direction="long",
                 stop_loss=1.0, target=10_000.0, position_size=0.1, quantity=10.0,
                 hold_bars=3, signal_ts=signal_ts)


def test_same_bytes_as_model_dump_json_through_fills_and_closes() -> None:
    cfg, encode = ExecConfig(bar_history=8), BookJson()
    books: dict[str, SymbolBook] = {}
    seen_positions = seen_closed = False
    for n, bar in enumerate(SyntheticAdapter(["AAPL", "BRK.B", "BTC-USD"], seed=7, bars=60)):
        book = books.get(bar.symbol) or SymbolBook(symbol=bar.symbol)
        book, _ = book.on_bar(bar, cfg)
        if n % 7 == 0:
            book, _ = book.on_order(_order(bar.symbol, bar.ts, n), cfg)
        books[bar.symbol] = book
        seen_positions |= bool(book.positions)
        seen_closed |= bool(book.closed)
        assert encode(book) == book.model_dump_json()
        assert SymbolBook.model_validate_json(encode(book)) == book
    assert seen_positions and seen_closed  # the test covered every part of a book


def test_a_restored_book_with_new_bar_objects_encodes_them() -> None:
    cfg, encode = ExecConfig(bar_history=4), BookJson()
    book = SymbolBook(symbol="AAPL")
    for bar in SyntheticAdapter(["AAPL"], seed=3, bars=6):
        book, _ = book.on_bar(bar, cfg)
    encode(book)
    restored = SymbolBook.model_validate_json(book.model_dump_json())  # as after a reload
    assert encode(restored) == book.model_dump_json()
    assert encode(SymbolBook(symbol="AAPL")) == SymbolBook(symbol="AAPL").model_dump_json()
