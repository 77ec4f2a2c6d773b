"""HRM: evaluates each trade.plan against the ruleset, stores the decision, books approved
plans in the paper ledger, publishes the verdict on `ark:stream:decisions` and sends each
approved plan to the executor (`trade.approved`).

It also consumes results (AGENT_04): the executor's `position.filled` and `position.closed`
update the ledger, the realised P&L, the loss streak and the open exposure, in the same
SQLite transaction as the message's idempotency mark; its `position.marked` marks the open
positions to market (hrm/open_pnl.py, stored the same way).

Why marks come from the executor: HRM's inbox carries no bars (Kyle sends them to Joey and
the executor), and marks carried only on fills and closes would leave a position marked at
its fill until something else happened in its symbol, stale exactly while it runs against
us. Reading bars or the executor's books from Redis outside a message would make the figure
depend on timing, not on the messages committed (a replay could store another value). So the
executor, which already commits each bar against its books, adds one `position.marked` to
HRM's inbox per bar of a symbol it holds open positions in (none for the others), in that
bar's commit: exactly once like every hop, and the stored open P&L is a function of the
messages HRM committed. A close that trips a breaker emits an
`error.raised` at the ruleset's severity (a critical one also sets the pause on the agents
upstream, AGENT_02) in the same Redis commit that acks it; an operator's `hrm.breaker_reset`
clears one. After every change the risk state is set in Redis in that same commit
(hrm/risk.py), so every host reads what HRM acted on.

Idempotency lives with the effect: `mark_processed`, the decision and the ledger entry commit
in one SQLite transaction, so a redelivered plan (after a crash between that commit and the
Redis ack) finds its mark and re-publishes the stored verdict instead of deciding twice.
HRM owns its store and breaker state: run one HRM per store (the lock enforces it per host).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from ark_runtime.agents.base import ConfigError
from ark_runtime.agents.consumer import ConsumerAgent, Output
from ark_runtime.bus.envelope import Envelope, derive_id
from ark_runtime.bus.errors import PAUSE_KEY, upstream_of
from ark_runtime.bus.keys import KEY_TAG, risk_state_key
from ark_runtime.bus.registry import (
    BreakerReset,
    ControlPause,
    ControlResume,
    ErrorRaised,
    HrmVerdict,
)
from ark_runtime.bus.streams import DECISIONS_STREAM, ERRORS_STREAM, inbox
from ark_runtime.execution.paper import PositionClosed, PositionFilled, PositionMarked
from ark_runtime.host.layout import store_path
from ark_runtime.hrm import (
    BreakerState,
    Decision,
    Exposure,
    RuleEngine,
    RulesetError,
    load_ruleset,
)
from ark_runtime.hrm.open_pnl import OPEN_BOOK_KEY, OpenBook
from ark_runtime.hrm.risk import risk_state
from ark_runtime.hrm.wal import BACKSTOP_PAGES, Checkpointer
from ark_runtime.planner import TradePlan
from ark_runtime.store import MemoryStore, StoreError
from ark_runtime.store_schema import SCHEMA_VERSION, Retention

TRIPS_KEY = "hrm.trips"  # store state: the trips and resets, newest last (bounded)
TRIPS_KEPT = 500


class Hrm(ConsumerAgent):
    name = "hrm"
    accepts = ("trade.plan", "position.filled", "position.closed", "position.marked",
               "hrm.breaker_reset")
    # Per-batch caches (see batch_scope); class defaults so a bare instance works too.
    _batch_exposure: dict[str, float] | None = None
    _batch_open: int | None = None
    _market_time: datetime | None = None
    _writes: list[list[str]] = []  # noqa: RUF012 - replaced per message, never mutated

    def setup(self) -> None:
        super().setup()
        try:
            self.engine = RuleEngine(load_ruleset(self.config.hrm_ruleset))
        except (RulesetError, TypeError, AttributeError, ValueError) as exc:
            # Whatever is wrong with the file, it is configuration: exit 78 (no restart loop)
            # and the pause upstream, never a traceback and exit 1.
            raise ConfigError(f"ARK_HRM_RULESET: {exc}") from None
        try:
            self.store = MemoryStore(store_path(self.env))
        except (StoreError, OSError) as exc:
            raise ConfigError(f"store {store_path(self.env)}: {exc}") from None
        if self.store.migrated_from is not None:
            self.log.warning("store %s: schema v%d migrated to v%d", store_path(self.env),
                             self.store.migrated_from, SCHEMA_VERSION,
                             extra={"event": "store_migrated"})
        cfg = self.config
        if cfg.store_retain_processed_days * 86400 <= cfg.bus_dedup_ttl_s:
            raise ConfigError("ARK_STORE_RETAIN_PROCESSED_DAYS must outlast "
                              "ARK_BUS_DEDUP_TTL_S: a redelivered message would find neither "
                              "its Redis mark nor its store mark and be decided twice")
        self.retention = Retention(processed_days=cfg.store_retain_processed_days,
                                   decisions_days=cfg.store_retain_decisions_days,
                                   ledger_days=cfg.store_retain_ledger_days,
                                   objects_days=cfg.store_retain_objects_days)
        self._next_prune = time.monotonic()  # once at start, then every ARK_STORE_PRUNE_EVERY_S
        self.store.tune_for_writer(self.config.hrm_synchronous, BACKSTOP_PAGES)
        self.checkpointer = Checkpointer(store_path(self.env))
        self.checkpointer.start()
        self.approved = self.rejected = 0
        self._batch_breakers: BreakerState | None = None
        # Publish the committed state at once: readers see HRM's state from its start (a
        # re-publication of what the store holds, so outside any message's commit).
        command = self._publish(self._breakers())
        assert self.r is not None
        self.r.set(command[1], command[2])

    def step(self) -> None:
        super().step()
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + self.config.store_prune_every_s
            started = time.monotonic()
            deleted = self.store.prune(self.retention)
            if any(deleted.values()):
                self.log.info("retention: pruned %s in %.2fs", deleted,
                              time.monotonic() - started,
                              extra={"event": "store_pruned", "deleted": deleted})

    @contextmanager
    def batch_scope(self) -> Iterator[None]:
        # One SQLite commit (one fsync) per batch instead of per decision; each plan runs in
        # its own SAVEPOINT (the nested transaction() in handle), so a failing plan rolls
        # back alone. The batch commits before any of its messages is acked in Redis.
        # The breaker state is read once per batch: BEGIN IMMEDIATE holds the write lock for
        # the whole batch and HRM's handling never writes it, so every plan of the batch
        # would read the same value anyway.
        # Exposure and the open count likewise, kept current by this batch's own changes.
        with self.store.transaction():
            self._batch_breakers = self._breakers()
            self._batch_exposure = self.store.open_exposure()
            self._batch_open = self.store.open_count()
            try:
                yield
            finally:
                self._batch_breakers = self._batch_exposure = self._batch_open = None

    def _breakers(self) -> BreakerState:
        raw = self.store.get_breaker_state()
        return BreakerState.model_validate(raw) if raw else BreakerState()

    def emitted_hop(self, stream: str, out: Envelope, parent: Envelope) -> dict[str, object]:
        hop = super().emitted_hop(stream, out, parent)
        # One "decided" line per plan: the verdict on the decisions stream. The approved
        # copy for the executor's inbox, a trip's error report or a pause stay "emitted".
        if stream != DECISIONS_STREAM or "decision" not in out.payload:
            return hop
        verdict = "approved" if out.payload["decision"]["approved"] else "rejected"
        hop.update(event="decided", msg=f"decided {out.payload['symbol']}: {verdict}")
        return hop

    def state_writes(self, envelope: Envelope) -> list[list[str]]:
        return self._writes

    def _exposure(self) -> dict[str, float]:
        if self._batch_exposure is None:
            return self.store.open_exposure()
        return self._batch_exposure

    def _open(self) -> int:
        return self.store.open_count() if self._batch_open is None else self._batch_open

    def _open_book(self) -> OpenBook:
        raw = dict(self.store.get_state(OPEN_BOOK_KEY) or {})
        raw.pop("open_pnl", None)  # stored beside the book for readers of the store
        return OpenBook.model_validate(raw)

    def _save_open_book(self, book: OpenBook) -> None:
        """In the caller's transaction (the one holding the message's idempotency mark)."""
        self.store.set_state(OPEN_BOOK_KEY, {**book.model_dump(mode="json"),
                                             "open_pnl": book.open_pnl()})

    def _publish(self, breakers: BreakerState) -> list[str]:
        """The SET of the risk state, for this message's commit."""
        rs = self.engine.ruleset
        book = self._open_book()
        doc = risk_state(breakers, rs.breakers, rs.exposure, self._exposure(), self._open(),
                         self._market_time, rs.version, open_pnl=book.open_pnl(),
                         marked_at=book.marked_at())
        return ["SET", risk_state_key(), json.dumps(doc, sort_keys=True)]

    def handle(self, envelope: Envelope) -> list[Output]:
        self._writes = []
        body = envelope.body()
        if isinstance(body, PositionFilled):
            return self._on_fill(envelope, body)
        if isinstance(body, PositionClosed):
            return self._on_close(envelope, body)
        if isinstance(body, PositionMarked):
            return self._on_mark(envelope, body)
        if isinstance(body, BreakerReset):
            return self._on_reset(envelope, body)
        return self._on_plan(envelope, body)

    def _on_plan(self, envelope: Envelope, plan: object) -> list[Output]:
        assert isinstance(plan, TradePlan)
        rule_input = plan.rule_input()
        breakers = self._batch_breakers or self._breakers()
        self._market_time = max(filter(None, (self._market_time, plan.pattern_ts)))
        exposure = self._exposure()
        decision = self.engine.evaluate(
            rule_input, breakers, market_time=plan.pattern_ts,
            exposure=Exposure(exposure.get(plan.symbol, 0.0), sum(exposure.values())))
        booked = False
        with self.store.transaction():
            plan_hash = self.store.save("plan", rule_input)
            if self.store.mark_processed(self.name, envelope.message_id):
                self.store.record_decision(
                    envelope.correlation_id, plan_hash, decision.approved,
                    [v.model_dump(mode="json") for v in decision.violations],
                    warnings=[v.model_dump(mode="json") for v in decision.warnings],
                    ruleset_version=decision.ruleset_version,
                    size_multiplier=decision.size_multiplier,
                    decided_at=decision.evaluated_at, plan_saved=True,
                )
                if decision.approved:
                    booked = self.store.open_position(
                        envelope.correlation_id, plan_hash,
                        size_multiplier=decision.size_multiplier, plan=rule_input)
            else:
                decision = self._stored(envelope.correlation_id, plan_hash) or decision
                self.log.info("plan already decided; re-publishing the stored verdict",
                              extra={"event": "duplicate"})
        if decision.approved:
            self.approved += 1
        else:
            self.rejected += 1
        if self.log.isEnabledFor(logging.DEBUG):  # the batch's INFO line carries the hop
            self.log.debug("decided %s: %s", plan.symbol,
                           "approved" if decision.approved else "rejected",
                           extra={"event": "decided", "approved": decision.approved,
                                  "violations": [v.rule_id for v in decision.violations],
                                  "warnings": [v.rule_id for v in decision.warnings]})
        if booked:  # the batch's view of exposure follows its own bookings
            added = plan.position_size * decision.size_multiplier
            exposure[plan.symbol] = exposure.get(plan.symbol, 0.0) + added
            if self._batch_open is not None:
                self._batch_open += 1
        verdict = HrmVerdict(symbol=plan.symbol, plan=plan, decision=decision)
        outputs: list[Output] = [(DECISIONS_STREAM, Envelope.new(
            "hrm.decision", verdict, from_agent="hrm", to_agent="bus", parent=envelope,
            message_id=derive_id(envelope.message_id, "hrm"),
        ))]
        if decision.approved:
            outputs.append((inbox("executor"), Envelope.new(
                "trade.approved", verdict, from_agent="hrm", to_agent="executor",
                parent=envelope, message_id=derive_id(envelope.message_id, "hrm:approved"))))
            self._writes = [self._publish(breakers)]
        return outputs

    # -- results -------------------------------------------------------------------------

    def _on_fill(self, envelope: Envelope, fill: PositionFilled) -> list[Output]:
        with self.store.transaction():
            if self.store.mark_processed(self.name, envelope.message_id):
                self.store.fill_position(fill.correlation_id, fill.fill_price, fill.filled_at)
                # Open P&L counts every position the executor filled, booked here or not
                # (as a close counts in the breakers either way).
                self._save_open_book(self._open_book().on_fill(fill))
        self._writes = [self._publish(self._batch_breakers or self._breakers())]
        return []

    def _on_mark(self, envelope: Envelope, mark: PositionMarked) -> list[Output]:
        with self.store.transaction():
            if self.store.mark_processed(self.name, envelope.message_id):
                self._save_open_book(self._open_book().on_mark(mark))
        stamp = mark.marked_at.astimezone(UTC)
        self._market_time = max(filter(None, (self._market_time, stamp)))
        self._writes = [self._publish(self._batch_breakers or self._breakers())]
        return []

    def _on_close(self, envelope: Envelope, close: PositionClosed) -> list[Output]:
        cfg = self.engine.ruleset.breakers
        before = self._batch_breakers or self._breakers()
        settled = False
        with self.store.transaction():
            first = self.store.mark_processed(self.name, envelope.message_id)
            if first:
                settled = self.store.settle_position(close.correlation_id, close.exit_price,
                                                     close.pnl, close.closed_at)
                self._save_open_book(self._open_book().on_close(close))
                if not settled:
                    # Not booked here (e.g. a store restored from an older snapshot): the
                    # result still counts in the breakers, which is what protects.
                    self.log.warning("close of %s: no open ledger entry; counted in the "
                                     "breakers only", close.correlation_id,
                                     extra={"event": "close_unbooked"})
                after = before.record_result(close.pnl, close.closed_at, cfg)
                was = set(before.tripped(cfg, close.closed_at))
                trips = [{"breaker": name, "message_id": envelope.message_id,
                          "at": close.closed_at.isoformat(),
                          "value": after.daily_loss(close.closed_at, cfg)
                          if name == "daily_loss" else after.consecutive_losses}
                         for name in after.tripped(cfg, close.closed_at) if name not in was]
                self.store.set_breaker_state(after.model_dump(mode="json"))
                if trips:
                    self._append_trips(trips)
            else:
                after = before
                trips = [t for t in self.store.get_state(TRIPS_KEY, [])
                         if t.get("message_id") == envelope.message_id]
        if first:
            self._batch_breakers = after if self._batch_breakers is not None else None
            exposure = self._exposure()
            if settled and close.symbol in exposure:
                left = exposure[close.symbol] - close.position_size
                if left > 1e-12:
                    exposure[close.symbol] = left
                else:
                    del exposure[close.symbol]
                if self._batch_open is not None:
                    self._batch_open -= 1
        stamp = close.closed_at.astimezone(UTC)
        self._market_time = max(filter(None, (self._market_time, stamp)))
        self._writes = [self._publish(after)]
        outputs: list[Output] = []
        for trip in trips:
            outputs += self._trip_outputs(envelope, trip)
        return outputs

    def _append_trips(self, records: list[dict[str, object]]) -> None:
        trips = self.store.get_state(TRIPS_KEY, []) + records
        self.store.set_state(TRIPS_KEY, trips[-TRIPS_KEPT:])

    def _trip_outputs(self, envelope: Envelope, trip: dict[str, object]) -> list[Output]:
        """The error report of a trip at the ruleset's severity; a critical one also pauses
        upstream (the pause record goes in with this message's state writes)."""
        name = str(trip["breaker"])
        cfg = self.engine.ruleset.breakers
        severity = cfg.severity(name)
        limit = cfg.daily_loss_limit if name == "daily_loss" else cfg.loss_streak_limit
        message = (f"breaker {name} tripped at {trip['value']:.6g} (limit {limit:g}): HRM "
                   f"rejects every new plan until it clears; runbook: docs/OPS_HANDBOOK.md"
                   f"#breaker-tripped")
        error = Envelope.new("error.raised", ErrorRaised(
            agent="hrm", severity=severity, error=f"breaker_tripped:{name}", message=message,
            related_message_id=envelope.message_id), from_agent="hrm", to_agent="bus",
            parent=envelope, priority=9 if severity == "critical" else 5,
            message_id=derive_id(envelope.message_id, f"trip:{name}"))
        outputs: list[Output] = [(ERRORS_STREAM, error)]
        self.log.log(logging.CRITICAL if severity == "critical" else logging.WARNING,
                     "breaker %s tripped", name, extra={"event": "breaker_tripped",
                                                        "breaker": name, "severity": severity})
        if severity == "critical":
            agents = upstream_of("hrm")
            reason = f"breaker_tripped:{name}: {message}"
            record = {"agents": agents, "reason": reason, "by": "hrm",
                      "since": datetime.now(UTC).isoformat(), "error_id": error.message_id}
            self._pause_write(["HSET", PAUSE_KEY, "hrm", json.dumps(record)])
            outputs.append((ERRORS_STREAM, Envelope.new(
                "control.pause", ControlPause(origin="hrm", agents=agents, reason=reason,
                                              by="hrm"),
                from_agent="hrm", to_agent="bus", parent=error, priority=9,
                message_id=derive_id(envelope.message_id, f"pause:{name}"))))
        return outputs

    def _pause_write(self, command: list[str]) -> None:
        """The pause record goes in this message's commit. Under the Redis Cluster layout
        `ark:pause` is in another slot than the commit's keys, so it is written at once
        instead (idempotent: a redelivery writes the same record again)."""
        if KEY_TAG:
            assert self.r is not None
            self.r.execute_command(*command)
        else:
            self._writes.append(command)

    def _on_reset(self, envelope: Envelope, reset: BreakerReset) -> list[Output]:
        cfg = self.engine.ruleset.breakers
        before = self._batch_breakers or self._breakers()
        with self.store.transaction():
            if self.store.mark_processed(self.name, envelope.message_id):
                after = before.reset(reset.breaker, self._market_time, cfg)
                self.store.set_breaker_state(after.model_dump(mode="json"))
                self._append_trips([{"reset": reset.breaker, "by": reset.by,
                                     "reason": reset.reason,
                                     "message_id": envelope.message_id,
                                     "at": datetime.now(UTC).isoformat()}])
            else:
                after = before
        if self._batch_breakers is not None:
            self._batch_breakers = after
        self.log.warning("breaker %s reset by %s: %s", reset.breaker, reset.by, reset.reason,
                         extra={"event": "breaker_reset", "breaker": reset.breaker})
        self._writes = [self._publish(after)]
        outputs: list[Output] = []
        still = after.tripped(cfg, self._market_time)
        if not any(cfg.severity(n) == "critical" for n in still):
            # No critical breaker holds the pipeline any more: lift HRM's pause (if any).
            self._pause_write(["HDEL", PAUSE_KEY, "hrm"])
            outputs.append((ERRORS_STREAM, Envelope.new(
                "control.resume", ControlResume(origins=["hrm"], by=reset.by,
                                                reason=f"breaker {reset.breaker} reset: "
                                                       f"{reset.reason}"[:2000]),
                from_agent="operator", to_agent="bus", parent=envelope, priority=9,
                message_id=derive_id(envelope.message_id, "resume"))))
        return outputs

    def _stored(self, correlation_id: str, plan_hash: str) -> Decision | None:
        for rec in self.store.decisions(correlation_id):
            if rec["plan_hash"] == plan_hash:
                return Decision(approved=rec["approved"], violations=rec["violations"],
                                warnings=rec["warnings"],
                                evaluated_at=datetime.fromisoformat(rec["decided_at"]),
                                ruleset_version=rec["ruleset_version"],
                                size_multiplier=rec["size_multiplier"])
        return None

    def persist(self) -> None:
        super().persist()
        self.checkpointer.stop()
        # Every decision is committed before its ack; closing checkpoints the WAL.
        self.store.close()
        self.log.info("decisions: %d approved, %d rejected this run", self.approved,
                      self.rejected, extra={"event": "summary"})
