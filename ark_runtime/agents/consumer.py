"""An agent that reads its inbox: validate -> dedup -> handle -> commit (emit+mark+ack)."""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import ClassVar

import redis

from ark_runtime import logjson
from ark_runtime.agents.base import Agent
from ark_runtime.bus.envelope import Envelope, EnvelopeError
from ark_runtime.bus.streams import Delivery, Inbox, default_consumer

Output = tuple[str, Envelope]


class ConsumerAgent(Agent):
    accepts: ClassVar[tuple[str, ...]]

    def setup(self) -> None:
        assert self.r is not None
        self.consumer = default_consumer(self.name, self.config.consumer_name)
        self.inbox = Inbox(self.r, self.name, self.consumer, self.settings)
        self.inbox.ensure_group()
        self._pending_cursor: str | None = "0"  # first, whatever we held before a restart
        # A restart re-reads its pending entries as a new delivery (a message that kills the
        # process must reach max_deliveries); a Redis error inside a running process does not.
        self._count_pending = True
        self._next_claim = 0.0
        self._next_trim = time.monotonic() + 5
        self.processed = 0

    def handle(self, envelope: Envelope) -> list[Output]:
        raise NotImplementedError

    def state_writes(self, envelope: Envelope) -> list[list[str]]:
        """Redis commands that must commit together with this message's ack (agent state)."""
        return []

    def discard_uncommitted(self) -> None:
        """handle() changed in-memory state but its commit did not (surely) happen: drop
        that state so it is rebuilt from what was committed. Stateless agents: nothing."""

    def severity(self, exc: Exception) -> str:
        # Persistence failing means every later message fails too: halt the producers.
        if isinstance(exc, sqlite3.Error | OSError):
            return "critical"
        return "error"

    def step(self) -> None:
        if self.paused():
            self.stop_event.wait(0.2)
            return
        try:
            self._step()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis lost its data (restarted without persistence): recreate our group.
            self.log.error("consumer group missing, recreating it: %s", exc,
                           extra={"event": "group_recreated"})
            self.inbox.ensure_group()
            self._pending_cursor = "0"

    def _step(self) -> None:
        now = time.monotonic()
        deliveries: list[Delivery] = []
        if self._pending_cursor is not None:
            deliveries = self._own_pending()
        elif now >= self._next_claim:
            self._next_claim = now + self.settings.claim_every_s
            deliveries = self.inbox.reclaim()
            if deliveries:
                self.log.info("reclaimed %d idle messages", len(deliveries),
                              extra={"event": "reclaimed", "count": len(deliveries)})
        if not deliveries:
            deliveries = self.inbox.read()
        # Everything read is processed before looking at the stop flag again (INFRA_04).
        for delivery in deliveries:
            self.process(delivery)
        if now >= self._next_trim:
            self._next_trim = now + 5
            self.inbox.trim()

    def _own_pending(self) -> list[Delivery]:
        assert self._pending_cursor is not None
        read = self.inbox.read_own_pending if self._count_pending else \
            self.inbox.peek_own_pending
        deliveries = read(self._pending_cursor)
        # Walk our old pending list once, then switch to new messages.
        self._pending_cursor = deliveries[-1].entry_id if deliveries else None
        return deliveries

    def recover(self) -> None:
        # Messages of the interrupted batch are still pending for us: take them up again
        # now rather than waiting for XAUTOCLAIM's idle time.
        self._pending_cursor = "0"
        self._count_pending = False

    def persist(self) -> None:
        if self.r is not None and hasattr(self, "inbox"):
            try:
                self.inbox.trim()
            except Exception as exc:  # trimming is housekeeping; never fail a stop on it
                self.log.warning("trim on stop failed: %s", exc)

    def process(self, delivery: Delivery) -> None:
        envelope = self._decode(delivery)
        if envelope is None:
            return
        delivery.envelope = envelope
        with logjson.context(correlation=envelope.correlation_id, message=envelope.message_id):
            reason = self._refusal(delivery, envelope)
            if reason:
                self._dead(delivery, reason, "warning" if "expired" in reason else "error")
                return
            # Only a redelivery can be a duplicate of our own work; skip the round trip
            # otherwise (the commit script still refuses a second effect in every case).
            if delivery.deliveries > 1 and self.inbox.already_done(envelope.message_id):
                self.inbox.ack(delivery)
                self.log.info("duplicate delivery ignored", extra={"event": "duplicate"})
                return
            self.log.info("received %s from %s", envelope.type, envelope.from_agent,
                          extra={"event": "received", "type": envelope.type,
                                 "from_agent": envelope.from_agent,
                                 "causation_id": envelope.causation_id,
                                 "deliveries": delivery.deliveries})
            try:
                outputs = self.handle(envelope)
            except Exception as exc:
                self.discard_uncommitted()
                # Not acked: it stays pending and is redelivered (reclaimed) later, until
                # max_deliveries sends it to the dead-letter stream with this reason.
                reason = f"{type(exc).__name__}: {exc}"
                self.log.exception("handling failed (delivery %d): %s", delivery.deliveries,
                                   reason, extra={"event": "handler_failed"})
                self.inbox.record_failure(delivery, reason)
                self._report(self.severity(exc), type(exc).__name__, str(exc), envelope)
                return
            self._commit(delivery, envelope, outputs)

    def _decode(self, delivery: Delivery) -> Envelope | None:
        """The entry's envelope, or None after dead-lettering it with the reason."""
        try:
            return Envelope.from_fields(delivery.fields)
        except EnvelopeError as exc:
            self._dead(delivery, str(exc), "warning")
        except Exception as exc:  # noqa: BLE001 - see below
            # A decoder bug must cost one entry, not a crash loop: decoding runs before the
            # delivery-count check, so an entry that crashes it would never be dead-lettered
            # and would block every entry behind it on each restart.
            self._dead(delivery, f"undecodable: {type(exc).__name__}: {exc}", "error")
        return None

    def _commit(self, delivery: Delivery, envelope: Envelope, outputs: list[Output]) -> None:
        sent_at = time.time()
        try:
            first = self.inbox.commit(delivery, outputs, self.state_writes(envelope))
        except BaseException:
            # The commit may or may not have run (a lost reply): in-memory state must not
            # run ahead of what Redis holds, or the redelivery is mistaken for "done".
            self.discard_uncommitted()
            raise
        if not first:
            self.log.info("already committed by another consumer", extra={"event": "duplicate"})
            return
        self.processed += 1
        for stream, out in outputs:
            logjson.log_at(self.log, sent_at, logging.INFO, "emitted %s to %s", out.type,
                           out.to_agent, extra={"event": "emitted", "type": out.type,
                                                "to_agent": out.to_agent, "stream": stream,
                                                "emitted_id": out.message_id})

    def _refusal(self, delivery: Delivery, envelope: Envelope) -> str | None:
        if delivery.deliveries > self.settings.max_deliveries:
            return (f"delivered {delivery.deliveries} times "
                    f"(max {self.settings.max_deliveries})")
        if envelope.to_agent != self.name:
            return f"misrouted: addressed to {envelope.to_agent}, read by {self.name}"
        if envelope.type not in self.accepts:
            return f"unexpected type {envelope.type} for {self.name}"
        if envelope.expired():
            return f"expired: ttl {envelope.ttl}s from {envelope.timestamp.isoformat()}"
        return None

    def _dead(self, delivery: Delivery, reason: str, severity: str) -> None:
        dead_id = self.inbox.dead_letter(delivery, reason)
        self.log.warning("dead-lettered %s: %s", delivery.entry_id, reason,
                         extra={"event": "dead_lettered", "dead_id": dead_id,
                                "entry_id": delivery.entry_id})
        self._report(severity, "dead_letter", f"{delivery.stream} {delivery.entry_id}: {reason}",
                     delivery.envelope)
