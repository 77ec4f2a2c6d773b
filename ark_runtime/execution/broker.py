"""The live-adapter boundary: what a broker adapter implements, and the gate in front of it.

ARK is paper by default everywhere, the lab included. A live adapter is code that sends the
executor's orders to a broker and reports the broker's fills back; it implements
`BrokerAdapter` below and reads its credentials from the `trading` credential domain only
(TRADING_API_KEY / TRADING_API_SECRET in the env schema), which only the unit running it is
given.

No live adapter ships, so `require_paper` refuses ARK_EXEC_MODE=live outright. The day one
does, starting it still takes two explicit steps: the inventory setting
`ark_runtime_execution_mode: live` (the role renders ARK_EXEC_MODE from it; its default is
paper and its argument spec allows nothing else to slip in by a typo), and a deploy, which is
an audited admin action (SEC_03), so who turned live trading on, when, is in the audit chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ark_runtime.validators import Symbol, UtcTime

__all__ = ["BrokerAdapter", "BrokerFill", "BrokerOrder", "LiveAdapterRefused", "require_paper"]


class LiveAdapterRefused(RuntimeError):
    """Live execution was asked for and cannot start (the message says why)."""


class BrokerOrder(BaseModel):
    """What the executor asks a broker for: one order per approved plan, idempotent by
    `client_order_id` (the flow's correlation id), so a resubmission after a crash is
    recognised by the broker rather than doubled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_order_id: str = Field(min_length=1, max_length=64)
    symbol: Symbol
    side: Literal["buy", "sell"]
    quantity: float = Field(gt=0)
    stop_loss: float = Field(gt=0)
    target: float = Field(gt=0)


class BrokerFill(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    client_order_id: str
    broker_fill_id: str = Field(description="the broker's id: the idempotency key of a fill")
    price: float = Field(gt=0)
    quantity: float = Field(gt=0)
    fee: float = Field(ge=0)
    at: UtcTime


@runtime_checkable
class BrokerAdapter(Protocol):
    """A broker connection. Every method may raise; the executor treats a raise as "not
    done" and retries with the same ids, so implementations must be idempotent by id."""

    name: str

    def submit(self, order: BrokerOrder) -> str:
        """Place `order` (bracket: stop and target attached); returns the broker's order id.
        Submitting a client_order_id the broker already has returns the same id."""
        ...

    def cancel(self, client_order_id: str) -> bool:
        """Cancel an order not yet (fully) filled; False if there was nothing to cancel."""
        ...

    def fills(self, since: datetime | None = None) -> Iterable[BrokerFill]:
        """Fills since `since` (all known when None), oldest first."""
        ...


def require_paper(mode: str) -> None:
    """The gate: paper runs; live is refused while no adapter ships."""
    if mode == "paper":
        return
    if mode == "live":
        raise LiveAdapterRefused(
            "live execution needs a broker adapter (ark_runtime/execution/broker.py: "
            "BrokerAdapter) and none ships with ARK; run paper (the default) or add an "
            "adapter, then set ark_runtime_execution_mode: live in the inventory and deploy")
    raise LiveAdapterRefused(f"unknown execution mode {mode!r}; expected paper or live")
