"""The executor: approved plans become paper positions, filled and closed from Kyle's bars
(AGENT_04). The fifth member of the pipeline (ark_runtime/pipeline.py).

Its inbox carries two types: `market.bar` (Kyle adds each bar here as well as to Joey's
inbox) and `trade.approved` (HRM, for each approved plan). The fill and close logic is pure
(execution/paper.py): the same bars give the same fills whatever order the two types arrive
in, so a slow or restarted HRM changes nothing in the result.

Exactly once, like every hop: each message's book update (HSET of that symbol's book) and its
fills and closes (`position.filled` / `position.closed`, to HRM's inbox and to the positions
stream) commit in the one atomic script that acks it (bus/streams.py). A kill -9 before the
commit redelivers the message against the book as last committed; after it, the done mark
makes the redelivery a no-op. On a failed or uncertain commit the books are reloaded from
Redis before the next message (as Joey reloads its windows).

While a symbol has open positions, each of its bars also sends HRM a `position.marked` (the
bar's close, in the same commit): HRM's open P&L is marked to market from it (see
agents/hrm.py for why the mark travels this way). The release before this one does not
register that type, so during a rolling upgrade marks are sent only while HRM advertises that
it reads them (bus/advert.py). Until then (an HRM of that release: no advertisement) no mark
is sent, and HRM's open P&L stays at the fills' prices; the newest mark supersedes every
earlier one, so the skipped marks lose nothing once HRM is upgraded: the next bar marks it.

Paper is the only mode that runs: ARK_EXEC_MODE=live needs a broker adapter
(execution/broker.py), and none ships.
"""

from __future__ import annotations

from collections.abc import Mapping

from ark_runtime.agents.base import ConfigError
from ark_runtime.agents.consumer import ConsumerAgent, Output
from ark_runtime.bus.advert import ReaderGate, fetch_from
from ark_runtime.bus.envelope import Envelope, derive_id
from ark_runtime.bus.keys import POSITIONS_STREAM, executor_books_key
from ark_runtime.bus.registry import HrmVerdict
from ark_runtime.bus.streams import Delivery, inbox
from ark_runtime.execution.broker import LiveAdapterRefused, require_paper
from ark_runtime.execution.paper import (
    Event,
    ExecConfig,
    Order,
    PositionClosed,
    PositionMarked,
    SymbolBook,
    mark_of,
)
from ark_runtime.hrm import RulesetError, load_ruleset
from ark_runtime.market import Bar


def order_of(envelope: Envelope, verdict: HrmVerdict) -> Order:
    """The order an approval asks for: the plan's side, stop, target and time limit, its
    size after HRM's multiplier."""
    plan, multiplier = verdict.plan, verdict.decision.size_multiplier
    return Order(correlation_id=envelope.correlation_id, symbol=plan.symbol,
                 direction=plan.direction, stop_loss=plan.stop_loss, target=plan.target,
                 position_size=plan.position_size * multiplier,
                 quantity=plan.quantity * multiplier, hold_bars=plan.hold_bars,
                 signal_ts=plan.pattern_ts)


def event_envelopes(event: Event, parent: Envelope) -> list[Output]:
    """A fill or close as two envelopes: HRM's copy (its inbox) and the broadcast copy (the
    positions stream). Ids derive from the flow and the event, so a re-run emits the same
    ids; the correlation id is the plan's flow, whichever message (a bar) caused it."""
    kind = "position.closed" if isinstance(event, PositionClosed) else "position.filled"
    out: list[Output] = []
    for stream, to_agent in ((inbox("hrm"), "hrm"), (POSITIONS_STREAM, "bus")):
        env = Envelope.new(kind, event, from_agent="executor", to_agent=to_agent,
                           parent=parent,
                           message_id=derive_id(event.correlation_id, f"{kind}:{to_agent}"))
        out.append((stream, env.model_copy(update={"correlation_id": event.correlation_id})))
    return out


def mark_envelope(mark: PositionMarked, parent: Envelope) -> Output:
    """HRM's copy of a mark (only HRM reads marks; the positions stream keeps fills and
    closes). The id derives from the message that moved the book: a re-run emits it again
    with the same id."""
    return (inbox("hrm"), Envelope.new("position.marked", mark, from_agent="executor",
                                       to_agent="hrm", parent=parent,
                                       message_id=derive_id(parent.message_id, "marked")))


class BookJson:
    """`book.model_dump_json()`, byte for byte, with each bar serialized once rather than on
    every bar of its symbol (issue #23 §3): a book keeps the symbol's last
    ARK_EXEC_BAR_HISTORY bars, and re-encoding all of them for each new bar was the
    executor's largest cost. Per symbol, the fragments of the bars its last book held, keyed
    by the bar object (kept alive with its fragment, so an id is never reused meanwhile)."""

    FIELDS = ("symbol", "bars", "orders", "positions", "closed")

    def __init__(self) -> None:
        self._bars: dict[str, dict[int, tuple[Bar, str]]] = {}

    def __call__(self, book: SymbolBook) -> str:
        if tuple(SymbolBook.model_fields) != self.FIELDS:  # a new field: the plain way
            return book.model_dump_json()
        known, kept = self._bars.get(book.symbol, {}), {}
        for bar in book.bars:
            hit = known.get(id(bar))
            if hit is None or hit[0] is not bar:
                hit = (bar, bar.model_dump_json())
            kept[id(bar)] = hit
        self._bars[book.symbol] = kept
        rest = book.model_dump_json(exclude={"bars"})
        at = rest.index(',"orders":')  # right after the symbol, where `bars` goes
        return "".join((rest[:at], ',"bars":[', ",".join(kept[id(b)][1] for b in book.bars),
                        "]", rest[at:]))


class Executor(ConsumerAgent):
    name = "executor"
    accepts = ("trade.approved", "market.bar")

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        self.book_json = BookJson()  # here, not in setup(): handle() runs without it in tests

    def setup(self) -> None:
        try:
            require_paper(self.config.exec_mode)
        except LiveAdapterRefused as exc:
            raise ConfigError(f"ARK_EXEC_MODE: {exc}") from None
        try:
            session = load_ruleset(self.config.hrm_ruleset).breakers
        except (RulesetError, TypeError, AttributeError, ValueError) as exc:
            raise ConfigError(f"ARK_HRM_RULESET (the session the executor flattens at): "
                              f"{exc}") from None
        self.exec_config = ExecConfig(
            slippage_bps=self.config.exec_slippage_bps, fee_bps=self.config.exec_fee_bps,
            session_timezone=session.session_timezone, session_reset=session.session_reset,
            bar_history=self.config.exec_bar_history)
        super().setup()
        self.books_key = executor_books_key()
        # HRM's advertisement, re-read every few seconds (not per bar: one GET instead of one
        # per message; an upgraded HRM is marked a few seconds after it starts at most).
        self.mark_gate = ReaderGate(fetch_from(self.r))
        self._reload = True
        self._writes: list[list[str]] = []
        self.filled = self.closed = 0

    # -- state ---------------------------------------------------------------------------

    def _restore(self) -> None:
        assert self.r is not None
        self.books: dict[str, SymbolBook] = {
            symbol: SymbolBook.model_validate_json(raw)
            for symbol, raw in self.r.hgetall(self.books_key).items()}

    def discard_uncommitted(self) -> None:
        # handle() advanced a book whose commit failed or is uncertain: Redis holds exactly
        # the committed books; reload them before the next message.
        self._reload = True

    def process_batch(self, deliveries: list[Delivery]) -> None:
        rest = list(deliveries)
        while rest:
            if self._reload:
                self._restore()  # a Redis error here is retried by the loop; the flag stays
                self._reload = False
            rest = self._one_batch(rest)

    def state_writes(self, envelope: Envelope) -> list[list[str]]:
        return self._writes

    # -- messages ------------------------------------------------------------------------

    def handle(self, envelope: Envelope) -> list[Output]:
        self._writes = []
        body = envelope.body()
        if isinstance(body, Bar):
            before = self.books.get(body.symbol)
            book = before or SymbolBook(symbol=body.symbol)
            book, events = book.on_bar(body, self.exec_config)
        else:
            assert isinstance(body, HrmVerdict)
            if not body.decision.approved:  # HRM sends approvals only; stay safe if not
                return []
            order = order_of(envelope, body)
            before = self.books.get(order.symbol)
            book = before or SymbolBook(symbol=order.symbol)
            book, events = book.on_order(order, self.exec_config)
        self.books[book.symbol] = book
        self._writes = [["HSET", self.books_key, book.symbol, self.book_json(book)]]
        outputs: list[Output] = []
        for event in events:
            if isinstance(event, PositionClosed):
                self.closed += 1
            else:
                self.filled += 1
            outputs += event_envelopes(event, envelope)
        # A new bar moves the mark; an approval only when it filled (it replayed bars). A
        # replayed or out-of-order bar leaves the book as it was: nothing new to mark.
        moved = events or (isinstance(body, Bar) and book is not before)
        mark = mark_of(book, self.exec_config) if moved else None
        if mark is not None and self.mark_gate.allows("position.marked"):
            outputs.append(mark_envelope(mark, envelope))
        return outputs

    def persist(self) -> None:
        super().persist()
        self.log.info("positions: %d filled, %d closed this run", self.filled, self.closed,
                      extra={"event": "summary"})
