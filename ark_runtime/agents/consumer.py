"""An agent that reads its inbox: validate -> dedup -> handle -> commit (emit+mark+ack)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import ClassVar

import redis

from ark_runtime import logjson
from ark_runtime.agents.base import Agent
from ark_runtime.bus import advert
from ark_runtime.bus.envelope import Envelope, EnvelopeError
from ark_runtime.bus.keys import reads_key
from ark_runtime.bus.streams import Delivery, Inbox, default_consumer, entry_key, replicated

Output = tuple[str, Envelope]


@dataclass
class _Ready:
    """A message handled and waiting for the batch's commit."""

    delivery: Delivery
    envelope: Envelope
    outputs: list[Output] = field(default_factory=list)
    state: list[list[str]] = field(default_factory=list)


def log_hops(log: logging.Logger, sent_at: float, hops: list[dict[str, object]]) -> None:
    """One INFO line per committed batch instead of one per message: `hops` lists each
    message's trace record (ids, event), which `ark trace` expands back into hops. Stamped
    with the time just before the commit, so a trace never shows the receiver first."""
    if hops:
        logjson.log_at(log, sent_at, logging.INFO, "committed %d hops", len(hops),
                       extra={"event": "batch", "hops": hops})


class ConsumerAgent(Agent):
    accepts: ClassVar[tuple[str, ...]]
    # The newest inbox entry this process committed (compared with the group's position
    # after a Redis error), and whether that comparison is due; set again by setup().
    _last_committed = "0-0"
    _check_position = False

    def setup(self) -> None:
        assert self.r is not None
        self.consumer = default_consumer(self.instance, self.config.consumer_name)
        self.inbox = Inbox(self.r, self.name, self.consumer, self.settings, self.instance)
        self.inbox.ensure_group()
        self.advertise()
        self._pending_cursor: str | None = "0"  # first, whatever we held before a restart
        # A restart re-reads its pending entries as a new delivery (a message that kills the
        # process must reach max_deliveries); a Redis error inside a running process does not.
        self._count_pending = True
        self._next_claim = 0.0
        self._next_trim = time.monotonic() + 5
        self.processed = 0
        # The newest inbox entry this process committed, and whether to compare it with
        # the group's position before the next read (after any Redis error).
        self._last_committed = "0-0"
        self._check_position = False

    def advertise(self) -> None:
        """Set what this agent reads (bus/advert.py) under its own key, with a TTL the loop
        keeps refreshing: writers send a new message type only to readers that list it."""
        assert self.r is not None
        self.r.set(reads_key(self.instance), advert.advertisement(self.name), ex=advert.TTL_S)
        self._next_advert = time.monotonic() + advert.REFRESH_S

    def _refresh_advert(self) -> None:
        if time.monotonic() < getattr(self, "_next_advert", 0.0):
            return
        try:
            self.advertise()
        except redis.OutOfMemoryError as exc:
            # A full Redis must not stop the inbox from draining: the key keeps its TTL,
            # and the next refresh tries again.
            self._next_advert = time.monotonic() + advert.REFRESH_S
            self.log.warning("could not refresh what this agent reads: %s", exc,
                             extra={"event": "redis_full"})

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
        self._refresh_advert()  # a paused agent still reads its inbox once resumed
        if self.paused_cached():
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
            self._regressed("the consumer group was gone")

    def _regressed(self, what: str) -> None:
        """Redis came back with older (or no) state than this process committed: state kept
        in memory (Joey's windows) is ahead of Redis's. Drop it and rebuild from Redis, and
        read the inbox again from the group's position, so nothing is decided on a window
        with a gap; Kyle replays the lost bars (docs/AGENT_PROTOCOL.md, "Durable Redis")."""
        self.log.error("Redis came back with older state (%s; this process had committed up "
                       "to %s): rebuilding state from Redis", what, self._last_committed,
                       extra={"event": "redis_state_regressed",
                              "last_committed": self._last_committed})
        self.discard_uncommitted()
        self._pending_cursor = "0"
        self._last_committed = "0-0"

    def _check_group_position(self) -> None:
        self._check_position = False
        if self._last_committed == "0-0":
            return
        try:
            groups = self.inbox.r.xinfo_groups(self.inbox.stream)
        except redis.ResponseError as exc:
            if "no such key" not in str(exc):
                raise
            groups = []  # the stream itself is gone: Redis came back empty
        group = next((g for g in groups if g["name"] == self.inbox.group), None)
        if group is None:
            raise redis.ResponseError("NOGROUP the group is gone")  # handled in step()
        if entry_key(group["last-delivered-id"]) < entry_key(self._last_committed):
            self._regressed(f"group {self.inbox.group} at {group['last-delivered-id']}")

    def _step(self) -> None:
        if self._check_position:
            self._check_group_position()
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
        if deliveries:
            self.process_batch(deliveries)
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
        # now rather than waiting for XAUTOCLAIM's idle time. And the error may have been
        # a Redis restart: check that it kept what we committed.
        self._pending_cursor = "0"
        self._count_pending = False
        self._check_position = True

    def persist(self) -> None:
        if self.r is not None and hasattr(self, "inbox"):
            try:
                self.inbox.trim()
            except Exception as exc:  # trimming is housekeeping; never fail a stop on it
                self.log.warning("trim on stop failed: %s", exc)

    def batch_scope(self) -> AbstractContextManager[object]:
        """Wraps the handling of one batch; HRM opens one SQLite transaction here (each
        message inside it gets its own SAVEPOINT), committed before the batch's Redis commit."""
        return contextlib.nullcontext()

    def process_batch(self, deliveries: list[Delivery]) -> None:
        """Handle every delivery, then commit them all in one pipelined round trip. A handler
        failure cuts the batch: what was handled before it is committed first, so an agent
        that rebuilds its state from Redis (Joey) never loses the earlier messages' state."""
        rest = list(deliveries)
        while rest:
            rest = self._one_batch(rest)

    def process(self, delivery: Delivery) -> None:
        self.process_batch([delivery])

    def _one_batch(self, deliveries: list[Delivery]) -> list[Delivery]:
        ready: list[_Ready] = []
        failed: tuple[_Ready, Exception] | None = None
        rest: list[Delivery] = []
        try:
            with self.batch_scope():
                for i, delivery in enumerate(deliveries):
                    item = self._prepare(delivery)
                    if item is None:
                        continue
                    try:
                        item.outputs = self.handle(item.envelope)
                        item.state = self.state_writes(item.envelope)
                    except Exception as exc:
                        failed, rest = (item, exc), deliveries[i + 1:]
                        break
                    ready.append(item)
        except redis.RedisError:
            self.discard_uncommitted()  # the loop backs off and re-reads what is pending
            raise
        except Exception as exc:  # the batch's own store commit failed: nothing was acked
            self.discard_uncommitted()
            for item in ready:
                self._failed(item, exc)
            return rest
        self._commit_batch(ready)
        if failed is not None:
            self.discard_uncommitted()
            self._failed(*failed)
        return rest

    def _prepare(self, delivery: Delivery) -> _Ready | None:
        """The decoded, accepted, not-yet-done message, or None when it was dead-lettered or
        acked as a duplicate."""
        envelope = self._decode(delivery)
        if envelope is None:
            return None
        delivery.envelope = envelope
        with logjson.context(correlation=envelope.correlation_id, message=envelope.message_id):
            reason = self._refusal(delivery, envelope)
            if reason:
                self._dead(delivery, reason, "warning" if "expired" in reason else "error")
                return None
            # Only a redelivery can be a duplicate of our own work; skip the round trip
            # otherwise (the commit script still refuses a second effect in every case).
            if delivery.deliveries > 1 and self.inbox.already_done(envelope.message_id):
                self.inbox.ack(delivery)
                self.log.info("duplicate delivery ignored", extra={"event": "duplicate"})
                return None
            # Per message: DEBUG only. The batch's INFO line carries every hop (ark trace).
            if self.log.isEnabledFor(logging.DEBUG):
                self.log.debug("received %s from %s", envelope.type, envelope.from_agent,
                               extra={"event": "received", "type": envelope.type,
                                      "from_agent": envelope.from_agent,
                                      "causation_id": envelope.causation_id,
                                      "deliveries": delivery.deliveries})
        return _Ready(delivery, envelope)

    def _failed(self, item: _Ready, exc: Exception) -> None:
        # Not acked: it stays pending and is redelivered (reclaimed) later, until
        # max_deliveries sends it to the dead-letter stream with this reason.
        envelope, delivery = item.envelope, item.delivery
        reason = f"{type(exc).__name__}: {exc}"
        with logjson.context(correlation=envelope.correlation_id, message=envelope.message_id):
            self.log.error("handling failed (delivery %d): %s", delivery.deliveries, reason,
                           exc_info=exc, extra={"event": "handler_failed"})
            self.inbox.record_failure(delivery, reason)
            self._report(self.severity(exc), type(exc).__name__, str(exc), envelope)

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

    def _commit_batch(self, ready: list[_Ready]) -> None:
        if not ready:
            return
        sent_at = time.time()
        try:
            firsts = self.inbox.commit_many(
                [(item.delivery, item.outputs, item.state) for item in ready])
            self._replication(replicated(self.r, self.settings))
        except BaseException:
            # A commit may or may not have run (a lost reply): in-memory state must not
            # run ahead of what Redis holds, or the redelivery is mistaken for "done".
            self.discard_uncommitted()
            raise
        if not all(firsts):
            # An entry settled elsewhere first (a reclaimed copy, a lost reply): its effects
            # were not applied, so in-memory state built from handling it must go.
            self.discard_uncommitted()
        newest = max((item.delivery.entry_id for item in ready), key=entry_key)
        if entry_key(newest) > entry_key(self._last_committed):
            self._last_committed = newest
        hops: list[dict[str, object]] = []
        for item, first in zip(ready, firsts, strict=True):
            env = item.envelope
            if not first:
                with logjson.context(correlation=env.correlation_id, message=env.message_id):
                    self.log.info("already committed by another consumer",
                                  extra={"event": "duplicate"})
                continue
            self.processed += 1
            hops.append({"event": "received", "correlation_id": env.correlation_id,
                         "message_id": env.message_id, "msg": f"received {env.type} from "
                         f"{env.from_agent}", "causation_id": env.causation_id})
            hops.extend(self.emitted_hop(stream, out, env) for stream, out in item.outputs)
        log_hops(self.log, sent_at, hops)

    def emitted_hop(self, stream: str, out: Envelope, parent: Envelope) -> dict[str, object]:
        """The trace record of one committed output (HRM names its own)."""
        return {"event": "emitted", "correlation_id": out.correlation_id,
                "message_id": parent.message_id, "emitted_id": out.message_id,
                "type": out.type, "to_agent": out.to_agent, "stream": stream,
                "msg": f"emitted {out.type} to {out.to_agent}"}

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
        if not dead_id:  # committed or dead-lettered by another consumer meanwhile
            self.log.info("%s was settled elsewhere; not dead-lettered", delivery.entry_id,
                          extra={"event": "duplicate", "entry_id": delivery.entry_id})
            return
        self.log.warning("dead-lettered %s: %s", delivery.entry_id, reason,
                         extra={"event": "dead_lettered", "dead_id": dead_id,
                                "entry_id": delivery.entry_id})
        self._report(severity, "dead_letter", f"{delivery.stream} {delivery.entry_id}: {reason}",
                     delivery.envelope)
