"""HRM's open P&L, marked to market (AGENT_04): the filled positions still open and each
symbol's last mark, as HRM keeps them in its store (state key `OPEN_BOOK_KEY`, written in the
same transaction as the idempotency mark of the fill, mark or close that changed it).

Open P&L is what closing every open position at its symbol's mark would realise, with the
executor's own costs (`execution.paper.settle`: adverse slippage on the exit, the entry fee
already paid and the exit fee): a close at the mark moves exactly that figure from open to
realised, so realised + open is conserved by it. A position not yet marked (the executor
marks it in the commit that fills it: only for the moment in between) counts its entry fee.
Pure: no store, no clock.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ark_runtime.execution.paper import PositionClosed, PositionFilled, PositionMarked, settle

__all__ = ["OPEN_BOOK_KEY", "Mark", "OpenBook", "OpenFill"]

OPEN_BOOK_KEY = "hrm.open_book"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OpenFill(_Frozen):
    symbol: str
    direction: Literal["long", "short"]
    fill_price: float = Field(gt=0)
    position_size: float = Field(gt=0)
    fee: float = Field(ge=0)


class Mark(_Frozen):
    price: float = Field(gt=0)
    at: str  # ISO 8601 UTC of the bar marked at (sorts as text)
    slippage_bps: float = Field(ge=0)
    fee_bps: float = Field(ge=0)


class OpenBook(_Frozen):
    fills: dict[str, OpenFill] = {}  # correlation id -> the open filled position
    marks: dict[str, Mark] = {}  # symbol -> its last mark (kept while it has open fills)

    def on_fill(self, fill: PositionFilled) -> OpenBook:
        entry = OpenFill(symbol=fill.symbol, direction=fill.direction,
                         fill_price=fill.fill_price, position_size=fill.position_size,
                         fee=fill.fee)
        return self.model_copy(update={"fills": {**self.fills, fill.correlation_id: entry}})

    def on_mark(self, mark: PositionMarked) -> OpenBook:
        at = mark.marked_at.isoformat()
        held = self.marks.get(mark.symbol)
        if held is not None and held.at > at:
            return self  # an older mark (a redelivery after a newer one): the newer stays
        new = Mark(price=mark.price, at=at, slippage_bps=mark.slippage_bps,
                   fee_bps=mark.fee_bps)
        return self.model_copy(update={"marks": {**self.marks, mark.symbol: new}})

    def on_close(self, close: PositionClosed) -> OpenBook:
        fills = {cid: f for cid, f in self.fills.items() if cid != close.correlation_id}
        held = {f.symbol for f in fills.values()}
        marks = {sym: m for sym, m in self.marks.items() if sym in held}
        return OpenBook(fills=fills, marks=marks)

    def position_pnl(self, fill: OpenFill) -> float:
        mark = self.marks.get(fill.symbol)
        if mark is None:  # not marked yet: at its fill price, no slippage or exit fee known
            return -fill.fee
        return settle(fill.direction, fill.fill_price, fill.position_size, fill.fee,
                      mark.price, mark.slippage_bps, mark.fee_bps)[2]

    def open_pnl(self) -> float:
        return sum((self.position_pnl(f) for f in self.fills.values()), 0.0)

    def marked_at(self) -> str | None:
        return max((m.at for m in self.marks.values()), default=None)
