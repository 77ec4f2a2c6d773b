"""memory.db soak: store size after N bars through the pipeline's logic, with retention side
by side with the same run without it (AGENT_04, MEM_01).

    .venv/bin/python benchmarks/store_soak.py [--bars 1000000] [--symbols 8]
        [--interval-min 60] [--report-every 200000]

In one process, on this tree's code: a synthetic feed (hourly bars by default, so 1 M bars
over 8 symbols span ~14 years of market time), Joey's detector, Kenny's planner, HRM's rule
engine with its breakers and exposure limits, the paper executor; and the store writes HRM
makes for each plan (payload, idempotency mark, decision, ledger entry) and for each fill,
close and mark (`position.marked`, one per bar of a symbol with open positions: its
idempotency mark and HRM's open book, hrm/open_pnl.py). Two stores get the identical writes:
one swept with the default retention (`store_schema.Retention`) once per simulated day on
market time, the other never. The timestamps are market time, so retention acts as it would
over those years. Store size = the database file after a WAL checkpoint (what a snapshot
copies). Agents' Redis state is not part of this (the executor's books are bounded by
ARK_EXEC_BAR_HISTORY per symbol). The loss-streak breaker latches until an operator resets
it; the soak resets it once per simulated day, as an operator would, so plans keep flowing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ark_runtime.execution.paper import (  # noqa: E402
    ExecConfig,
    Order,
    PositionClosed,
    SymbolBook,
    mark_of,
)
from ark_runtime.hrm import BreakerState, Exposure, RuleEngine  # noqa: E402
from ark_runtime.hrm.open_pnl import OPEN_BOOK_KEY, OpenBook  # noqa: E402
from ark_runtime.market import SyntheticAdapter  # noqa: E402
from ark_runtime.patterns import PatternDetector  # noqa: E402
from ark_runtime.planner import AccountConfig, PlanError, plan_trade  # noqa: E402
from ark_runtime.store import MemoryStore  # noqa: E402
from ark_runtime.store_schema import Retention  # noqa: E402

SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "BTC-USD")


def save_book(store: MemoryStore, book: OpenBook) -> None:
    store.set_state(OPEN_BOOK_KEY, {**book.model_dump(mode="json"), "open_pnl": book.open_pnl()})


def size_of(store: MemoryStore) -> int:
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return store.path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--symbols", type=int, default=8)
    ap.add_argument("--interval-min", type=int, default=60)
    ap.add_argument("--report-every", type=int, default=200_000)
    args = ap.parse_args(argv)
    symbols = list(SYMBOLS[:args.symbols])
    # Market time starts in 1990, so it stays before the wall clock: the marks and payloads
    # the store stamps with the wall clock are re-stamped on market time before each sweep.
    feed = SyntheticAdapter(symbols, seed=7, bars=args.bars // len(symbols),
                            interval=timedelta(minutes=args.interval_min),
                            start=datetime(1990, 1, 2, 14, 30, tzinfo=UTC))
    engine, detector = RuleEngine(), PatternDetector()
    account, cfg = AccountConfig(account_size=100_000), ExecConfig()
    retention = Retention()
    breakers = BreakerState()
    open_book = OpenBook()
    books: dict[str, SymbolBook] = {}
    hashes: dict[str, str] = {}
    # On tmpfs when there is one: the figure is the file's size, not the disk's speed.
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        kept = MemoryStore(Path(tmp) / "retention.db")
        base = MemoryStore(Path(tmp) / "no-retention.db")
        for store in (kept, base):
            store.tune_for_writer("NORMAL", 10_000)
        stores = (kept, base)
        counts = {"plans": 0, "approved": 0, "closed": 0, "marks": 0}
        next_prune = None
        started = time.perf_counter()
        print(f"{'bars':>9} {'market time':>20} {'plans':>7} {'approved':>8} {'closed':>7} "
              f"{'with retention':>15} {'without':>12}")
        for i, bar in enumerate(feed, 1):
            now = bar.ts
            book = books.get(bar.symbol) or SymbolBook(symbol=bar.symbol)
            book, events = book.on_bar(bar, cfg)
            books[bar.symbol] = book
            for event in events:
                if isinstance(event, PositionClosed):
                    breakers = breakers.record_result(event.pnl, event.closed_at,
                                                      engine.ruleset.breakers)
                    counts["closed"] += 1
                    open_book = open_book.on_close(event)
                    for store in stores:
                        with store.transaction():
                            store.mark_processed("hrm", f"close-{event.correlation_id}")
                            store.settle_position(event.correlation_id, event.exit_price,
                                                  event.pnl, event.closed_at)
                            store.set_breaker_state(breakers.model_dump(mode="json"))
                            save_book(store, open_book)
                else:
                    open_book = open_book.on_fill(event)
                    for store in stores:
                        with store.transaction():
                            store.mark_processed("hrm", f"fill-{event.correlation_id}")
                            store.fill_position(event.correlation_id, event.fill_price,
                                                event.filled_at)
                            save_book(store, open_book)
            mark = mark_of(book, cfg)
            if mark is not None:
                counts["marks"] += 1
                open_book = open_book.on_mark(mark)
                for store in stores:
                    with store.transaction():
                        store.mark_processed("hrm", f"mark-{i}")
                        save_book(store, open_book)
            for pattern in detector.update(bar):
                try:
                    plan = plan_trade(pattern, account)
                except PlanError:
                    continue
                counts["plans"] += 1
                cid = f"00000000-0000-4000-8000-{counts['plans']:012d}"
                rule_input = plan.rule_input()
                exposure = kept.open_exposure()
                decision = engine.evaluate(rule_input, breakers, now=now, market_time=now,
                                           exposure=Exposure(exposure.get(plan.symbol, 0.0),
                                                             sum(exposure.values())))
                for store in stores:
                    with store.transaction():
                        digest = store.save("plan", rule_input)
                        store.mark_processed("hrm", cid)
                        store.record_decision(cid, digest, decision.approved, [
                            v.model_dump(mode="json") for v in decision.violations],
                            decided_at=now, plan_saved=True,
                            size_multiplier=decision.size_multiplier)
                        if decision.approved:
                            store.open_position(cid, digest, plan=rule_input, opened_at=now,
                                                size_multiplier=decision.size_multiplier)
                    hashes[cid] = digest
                if decision.approved:
                    counts["approved"] += 1
                    order = Order(correlation_id=cid, symbol=plan.symbol,
                                  direction=plan.direction, stop_loss=plan.stop_loss,
                                  target=plan.target,
                                  position_size=plan.position_size * decision.size_multiplier,
                                  quantity=plan.quantity * decision.size_multiplier,
                                  hold_bars=plan.hold_bars, signal_ts=plan.pattern_ts)
                    books[plan.symbol], _ = books[plan.symbol].on_order(order, cfg)
            # Processed marks carry the wall clock; age them on market time for the sweep.
            if next_prune is None or now >= next_prune:
                kept._db.execute("UPDATE processed_messages SET processed_at = ? WHERE "
                                 "processed_at > ?", (now.isoformat(), now.isoformat()))
                kept._db.execute("UPDATE objects SET created_at = ? WHERE created_at > ?",
                                 (now.isoformat(), now.isoformat()))
                kept.prune(retention, now=now)
                next_prune = now + timedelta(days=1)
                # The operator's daily reset of a tripped loss streak (it latches until one),
                # so plans keep flowing through the years the soak covers.
                breakers = breakers.reset_streak()
            if i % args.report_every == 0:
                print(f"{i:>9} {now.date().isoformat():>20} {counts['plans']:>7} "
                      f"{counts['approved']:>8} {counts['closed']:>7} "
                      f"{size_of(kept) / 1e6:>12.2f} MB {size_of(base) / 1e6:>9.2f} MB",
                      flush=True)
        elapsed = time.perf_counter() - started
        print(f"done: {i} bars ({counts['marks']} marks) in {elapsed:.0f} s; final store with "
              f"retention "
              f"{size_of(kept) / 1e6:.2f} MB, without {size_of(base) / 1e6:.2f} MB")
        kept.close()
        base.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
