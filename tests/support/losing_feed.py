"""A scripted losing feed for the deployed pipeline (AGENT_04 lab proof): one symbol, a quiet
range, a breakout on heavy volume (Joey's long breakout, Kenny's plan, HRM's approval), the
bar it fills on, then a bar that gaps down far through the stop (the paper executor exits at
the gapped open). One stop-out loses more than the default ruleset's daily-loss limit, so
the breaker trips on that close.

Its bars are in a session of their own (2030), later than anything the lab's synthetic feed
reaches (2024), so HRM's daily values for it start at zero and nothing else counts in them.
`expected_trade` runs the same bars through the pure logic the agents use: what the deployed
processes must agree with.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ark_runtime.execution.paper import ExecConfig, Order, PositionClosed, SymbolBook
from ark_runtime.market import Bar, bar_to_json
from ark_runtime.patterns import Pattern, PatternDetector
from ark_runtime.planner import AccountConfig, TradePlan, plan_trade

SYMBOL = "LOSS"
T0 = datetime(2030, 1, 2, 14, 0, tzinfo=UTC)
SESSION = T0.date().isoformat()
QUIET_BARS = 60


def bars() -> list[Bar]:
    out: list[Bar] = []

    def bar(open_: float, high: float, low: float, close: float, volume: float) -> None:
        out.append(Bar(symbol=SYMBOL, ts=T0 + timedelta(minutes=len(out)), open=open_,
                       high=high, low=low, close=close, volume=volume))

    # A quiet range: the averages stay level (no cross), nothing closes outside it.
    for i in range(QUIET_BARS):
        close = 100.4 if i % 2 else 100.0
        bar(100.4 if i % 2 == 0 else 100.0, 100.5, 99.9, close, 1e6)
    bar(100.0, 103.1, 99.9, 103.0, 3e6)  # the breakout: a long plan on this close
    bar(103.0, 103.2, 102.8, 103.0, 1e6)  # filled at this open
    # Opens at 25, far through the stop (exit at the open), back to 103 by the close on
    # light volume: nothing for Joey to signal on, so no plan races the close.
    bar(25.0, 103.2, 25.0, 103.0, 5e5)
    return out


def jsonl() -> str:
    return "".join(bar_to_json(b) + "\n" for b in bars())


def expected_trade(cfg: ExecConfig, account: AccountConfig,
                   size_multiplier: float = 1.0) -> tuple[list[Pattern], TradePlan,
                                                          PositionClosed]:
    """The patterns Joey finds in the feed, the plan Kenny makes of the one there must be,
    and the close the executor must report for it."""
    detector = PatternDetector()
    patterns = [p for b in bars() for p in detector.update(b)]
    [pattern] = patterns
    plan = plan_trade(pattern, account)
    order = Order(correlation_id="expected", symbol=SYMBOL, direction=plan.direction,
                  stop_loss=plan.stop_loss, target=plan.target,
                  position_size=plan.position_size * size_multiplier,
                  quantity=plan.quantity * size_multiplier, hold_bars=plan.hold_bars,
                  signal_ts=plan.pattern_ts)
    book, closes = SymbolBook(symbol=SYMBOL), []
    book, _ = book.on_order(order, cfg)
    for b in bars():
        book, events = book.on_bar(b, cfg)
        closes += [e for e in events if isinstance(e, PositionClosed)]
    [close] = closes
    return patterns, plan, close
