"""Paper fills and closes: pure functions of the bar sequence (no I/O, no clock).

A `SymbolBook` holds one symbol's recent bars, its orders waiting for a fill and its open
positions. An order (an approved plan) fills at the open of the first bar strictly after the
plan's signal bar, moved against us by the slippage; it closes at its stop, its target, after
its time limit (bars held) at that bar's close, or at the session end (the close of the last
bar of its session, seen when the first bar of a later session arrives).

Determinism is the point: the executor sees bars and approvals interleaved in whatever order
the pipeline delivered them, so an order replays the bars the book already holds after its
signal bar. Whatever the interleaving (a slow HRM, a kill -9 and a redelivery), the same bars
give the same fill, the same exit and the same P&L.

Within one bar, a stop and a target both touched count as the stop (we cannot know which came
first; assuming the worse is the conservative reading). A bar that opens beyond the stop or
target exits at its open (a gap), not at the level.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ark_runtime.market import Bar, session_of
from ark_runtime.validators import Symbol, UtcTime

__all__ = ["Event", "ExecConfig", "ExitReason", "Order", "Position", "PositionClosed",
           "PositionFilled", "PositionMarked", "SymbolBook", "mark_of", "session_of", "settle"]

ExitReason = Literal["stop", "target", "time_limit", "session_end"]


class ExecConfig(BaseModel):
    """Fill assumptions: adverse slippage and a fee per side, both in basis points of price
    (fee: of notional), and the session the positions are flattened at the end of."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slippage_bps: float = Field(default=2.0, ge=0, le=500)
    fee_bps: float = Field(default=1.0, ge=0, le=500)
    session_timezone: str = "UTC"
    session_reset: time = time(0, 0)
    bar_history: int = Field(default=256, ge=1, le=100_000)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Order(_Frozen):
    """An approved plan waiting for its fill."""

    correlation_id: str
    symbol: Symbol
    direction: Literal["long", "short"]
    stop_loss: float = Field(gt=0)
    target: float = Field(gt=0)
    position_size: float = Field(gt=0, le=1)  # fraction of the account, after HRM's multiplier
    quantity: float = Field(gt=0)
    hold_bars: int = Field(ge=1)
    signal_ts: UtcTime  # the bar the plan was made on; the fill is the next one


class PositionFilled(_Frozen):
    """An order filled: the `position.filled` payload."""

    correlation_id: str
    symbol: Symbol
    direction: Literal["long", "short"]
    fill_price: float = Field(gt=0)
    quantity: float = Field(gt=0)
    position_size: float = Field(gt=0, le=1)
    stop_loss: float = Field(gt=0)
    target: float = Field(gt=0)
    fee: float = Field(ge=0, description="entry fee, fraction of the account")
    filled_at: UtcTime = Field(description="timestamp of the bar filled at")
    paper: Literal[True] = True


class PositionClosed(_Frozen):
    """A position closed: the `position.closed` payload. `pnl` is net of both fees and is a
    fraction of the account (what HRM's breakers count)."""

    correlation_id: str
    symbol: Symbol
    direction: Literal["long", "short"]
    fill_price: float = Field(gt=0)
    exit_price: float = Field(gt=0)
    position_size: float = Field(gt=0, le=1)
    reason: ExitReason
    bars_held: int = Field(ge=0)
    fees: float = Field(ge=0)
    pnl: float
    filled_at: UtcTime
    closed_at: UtcTime
    paper: Literal[True] = True


class PositionMarked(_Frozen):
    """A symbol's mark while the executor holds open positions in it: the `position.marked`
    payload, one per bar of such a symbol. HRM marks its open positions to `price` (open P&L
    is what closing them at this price would realise, with the executor's costs, `settle`);
    the costs come with the mark so HRM's figure is the executor's, whatever HRM's own
    host is configured with."""

    symbol: Symbol
    price: float = Field(gt=0, description="the close of the bar marked at")
    marked_at: UtcTime = Field(description="timestamp of that bar")
    slippage_bps: float = Field(ge=0, le=500)
    fee_bps: float = Field(ge=0, le=500)
    open_positions: int = Field(ge=1, description="filled positions open in the symbol")
    paper: Literal[True] = True


class Position(_Frozen):
    order: Order
    fill_price: float
    filled_at: UtcTime
    entry_fee: float
    session: str
    bars_held: int = 0


Event = PositionFilled | PositionClosed
CLOSED_KEPT = 256


def _adverse(price: float, side: int, bps: float) -> float:
    """`price` moved against a trade of `side` (+1 buys, -1 sells) by `bps` basis points."""
    return price * (1 + side * bps / 10_000)


class SymbolBook(_Frozen):
    """One symbol's paper book; every method returns a new book and the events it caused."""

    symbol: Symbol
    bars: tuple[Bar, ...] = ()
    orders: tuple[Order, ...] = ()
    positions: tuple[Position, ...] = ()
    closed: tuple[str, ...] = ()  # recently closed flows: a repeated approval opens nothing

    def _closing(self, events: list[Event]) -> tuple[str, ...]:
        done = [e.correlation_id for e in events if isinstance(e, PositionClosed)]
        return (*self.closed, *done)[-CLOSED_KEPT:]

    # -- inputs ------------------------------------------------------------------------

    def on_order(self, order: Order, cfg: ExecConfig) -> tuple[SymbolBook, list[Event]]:
        """Take an approved order; replay the bars already seen after its signal bar."""
        if order.symbol != self.symbol:
            raise ValueError(f"order for {order.symbol} given to the {self.symbol} book")
        known = {o.correlation_id for o in self.orders} | set(self.closed) | \
            {p.order.correlation_id for p in self.positions}
        if order.correlation_id in known:
            return self, []  # the same approval twice: one position
        events: list[Event] = []
        pending: Order | None = order
        position: Position | None = None
        previous: Bar | None = None
        for bar in (b for b in self.bars if b.ts > order.signal_ts):
            if pending is not None:
                position, fill = self._fill(pending, bar, cfg)
                events.append(fill)
                pending = None
                position, close = self._advance(position, bar, None, cfg)
            else:
                assert position is not None
                position, close = self._advance(position, bar, previous, cfg)
            if close is not None:
                events.append(close)
                position = None
                break
            previous = bar
        book = self.model_copy(update={"closed": self._closing(events)})
        if pending is not None:
            book = book.model_copy(update={"orders": (*self.orders, pending)})
        elif position is not None:
            book = book.model_copy(update={"positions": (*self.positions, position)})
        return book, events

    def on_bar(self, bar: Bar, cfg: ExecConfig) -> tuple[SymbolBook, list[Event]]:
        """A new bar: exits first (positions filled before it), then fills of waiting orders
        (a position filled at this bar's open is then checked against the same bar)."""
        if bar.symbol != self.symbol:
            raise ValueError(f"bar for {bar.symbol} given to the {self.symbol} book")
        if self.bars and bar.ts <= self.bars[-1].ts:
            return self, []  # a replayed or out-of-order bar changes nothing
        previous = self.bars[-1] if self.bars else None
        events: list[Event] = []
        positions: list[Position] = []
        for pos in self.positions:
            pos, close = self._advance(pos, bar, previous, cfg)
            if close is None:
                positions.append(pos)
            else:
                events.append(close)
        orders: list[Order] = []
        for order in self.orders:
            if bar.ts <= order.signal_ts:
                orders.append(order)
                continue
            pos, fill = self._fill(order, bar, cfg)
            events.append(fill)
            pos, close = self._advance(pos, bar, None, cfg)
            if close is None:
                positions.append(pos)
            else:
                events.append(close)
        bars = (*self.bars, bar)[-cfg.bar_history:]
        # Every part is already a validated model: skip re-validating the whole history.
        return SymbolBook.model_construct(
            symbol=self.symbol, bars=bars, orders=tuple(orders), positions=tuple(positions),
            closed=self._closing(events)), events

    # -- mechanics ---------------------------------------------------------------------

    @staticmethod
    def _fill(order: Order, bar: Bar, cfg: ExecConfig) -> tuple[Position, PositionFilled]:
        side = 1 if order.direction == "long" else -1
        price = _adverse(bar.open, side, cfg.slippage_bps)
        fee = order.position_size * cfg.fee_bps / 10_000
        pos = Position(order=order, fill_price=price, filled_at=bar.ts, entry_fee=fee,
                       session=session_of(bar.ts, cfg.session_timezone, cfg.session_reset))
        fill = PositionFilled(correlation_id=order.correlation_id, symbol=order.symbol,
                              direction=order.direction, fill_price=price,
                              quantity=order.quantity, position_size=order.position_size,
                              stop_loss=order.stop_loss, target=order.target, fee=fee,
                              filled_at=bar.ts)
        return pos, fill

    @staticmethod
    def _advance(pos: Position, bar: Bar, previous: Bar | None,
                 cfg: ExecConfig) -> tuple[Position, PositionClosed | None]:
        """`pos` after `bar`; with a close when it exits. `previous` is the bar before
        (for the session end); None when `bar` is the position's fill bar."""
        order = pos.order
        session = session_of(bar.ts, cfg.session_timezone, cfg.session_reset)
        if previous is not None and session != pos.session:
            # The previous bar was the last of the position's session: flat at its close.
            return pos, _close(pos, previous.close, "session_end", previous.ts, cfg)
        held = pos.bars_held + 1
        long = order.direction == "long"
        stop_hit = bar.low <= order.stop_loss if long else bar.high >= order.stop_loss
        target_hit = bar.high >= order.target if long else bar.low <= order.target
        if stop_hit:
            gapped = bar.open <= order.stop_loss if long else bar.open >= order.stop_loss
            level = bar.open if gapped else order.stop_loss
            return pos, _close(pos, level, "stop", bar.ts, cfg, held)
        if target_hit:
            gapped = bar.open >= order.target if long else bar.open <= order.target
            level = bar.open if gapped else order.target
            return pos, _close(pos, level, "target", bar.ts, cfg, held)
        if held >= order.hold_bars:
            return pos, _close(pos, bar.close, "time_limit", bar.ts, cfg, held)
        return pos.model_copy(update={"bars_held": held}), None


def mark_of(book: SymbolBook, cfg: ExecConfig) -> PositionMarked | None:
    """The mark of `book`'s filled open positions at its latest bar; None with none open."""
    if not book.positions or not book.bars:
        return None
    bar = book.bars[-1]
    return PositionMarked(symbol=book.symbol, price=bar.close, marked_at=bar.ts,
                          slippage_bps=cfg.slippage_bps, fee_bps=cfg.fee_bps,
                          open_positions=len(book.positions))


def settle(direction: str, fill_price: float, position_size: float, entry_fee: float,
           level: float, slippage_bps: float, fee_bps: float) -> tuple[float, float, float]:
    """(exit price, fees, P&L net of both fees) of closing a position at `level`: the one
    definition behind every close here and HRM's open P&L (a close at the mark)."""
    side = 1 if direction == "long" else -1
    exit_price = _adverse(level, -side, slippage_bps)  # the exit trades the other way
    gross = position_size * side * (exit_price - fill_price) / fill_price
    exit_fee = position_size * (exit_price / fill_price) * fee_bps / 10_000
    fees = entry_fee + exit_fee
    return exit_price, fees, gross - fees


def _close(pos: Position, level: float, reason: ExitReason, at: datetime, cfg: ExecConfig,
           held: int | None = None) -> PositionClosed:
    order = pos.order
    exit_price, fees, pnl = settle(order.direction, pos.fill_price, order.position_size,
                                   pos.entry_fee, level, cfg.slippage_bps, cfg.fee_bps)
    return PositionClosed(correlation_id=order.correlation_id, symbol=order.symbol,
                          direction=order.direction, fill_price=pos.fill_price,
                          exit_price=exit_price, position_size=order.position_size,
                          reason=reason, bars_held=pos.bars_held if held is None else held,
                          fees=fees, pnl=pnl, filled_at=pos.filled_at, closed_at=at)
