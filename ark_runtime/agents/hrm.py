"""HRM: evaluates each trade.plan against the ruleset, stores the decision, books approved
plans in the paper ledger, and publishes the verdict on `ark:stream:decisions`.

Idempotency lives with the effect: `mark_processed`, the decision and the ledger entry commit
in one SQLite transaction, so a redelivered plan (after a crash between that commit and the
Redis ack) finds its mark and re-publishes the stored verdict instead of deciding twice.
HRM owns its store and breaker state: run one HRM per store (the lock enforces it per host).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from ark_runtime.agents.base import ConfigError
from ark_runtime.agents.consumer import ConsumerAgent, Output
from ark_runtime.bus.envelope import Envelope, derive_id
from ark_runtime.bus.registry import HrmVerdict
from ark_runtime.bus.streams import DECISIONS_STREAM
from ark_runtime.host.layout import store_path
from ark_runtime.hrm import BreakerState, Decision, RuleEngine, RulesetError, load_ruleset
from ark_runtime.hrm.wal import BACKSTOP_PAGES, Checkpointer
from ark_runtime.planner import TradePlan
from ark_runtime.store import MemoryStore, StoreError


class Hrm(ConsumerAgent):
    name = "hrm"
    accepts = ("trade.plan",)

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
        self.store.tune_for_writer(self.config.hrm_synchronous, BACKSTOP_PAGES)
        self.checkpointer = Checkpointer(store_path(self.env))
        self.checkpointer.start()
        self.approved = self.rejected = 0
        self._batch_breakers: BreakerState | None = None

    @contextmanager
    def batch_scope(self) -> Iterator[None]:
        # One SQLite commit (one fsync) per batch instead of per decision; each plan runs in
        # its own SAVEPOINT (the nested transaction() in handle), so a failing plan rolls
        # back alone. The batch commits before any of its messages is acked in Redis.
        # The breaker state is read once per batch: BEGIN IMMEDIATE holds the write lock for
        # the whole batch and HRM's handling never writes it, so every plan of the batch
        # would read the same value anyway.
        with self.store.transaction():
            self._batch_breakers = self._breakers()
            try:
                yield
            finally:
                self._batch_breakers = None

    def _breakers(self) -> BreakerState:
        raw = self.store.get_breaker_state()
        return BreakerState.model_validate(raw) if raw else BreakerState()

    def emitted_hop(self, stream: str, out: Envelope, parent: Envelope) -> dict[str, object]:
        hop = super().emitted_hop(stream, out, parent)
        verdict = "approved" if out.payload["decision"]["approved"] else "rejected"
        hop.update(event="decided", msg=f"decided {out.payload['symbol']}: {verdict}")
        return hop

    def handle(self, envelope: Envelope) -> list[Output]:
        plan = envelope.body()
        assert isinstance(plan, TradePlan)
        rule_input = plan.rule_input()
        breakers = self._batch_breakers or self._breakers()
        decision = self.engine.evaluate(rule_input, breakers)
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
                    self.store.open_position(envelope.correlation_id, plan_hash,
                                             size_multiplier=decision.size_multiplier,
                                             plan=rule_input)
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
        verdict = HrmVerdict(symbol=plan.symbol, plan=plan, decision=decision)
        return [(DECISIONS_STREAM, Envelope.new(
            "hrm.decision", verdict, from_agent="hrm", to_agent="bus", parent=envelope,
            message_id=derive_id(envelope.message_id, "hrm"),
        ))]

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
