"""Kyle: reads a market feed and emits one market.bar per bar and symbol to Joey.

Feed (env):  ARK_FEED=replay|synthetic|sample (default: replay when ARK_FEED_PATH is set,
             else sample). ARK_FEED_PATH is canonicalised under ARK_FEED_DIR (SEC_02).
             Synthetic: ARK_FEED_SYMBOLS (comma list), ARK_FEED_SEED, ARK_FEED_BARS.
             ARK_FEED_RATE: bars per second (0 = as fast as the bus takes them).

Exactly-once emission across restarts: each batch's XADDs and the feed cursor
(`ark:kyle:cursor:<feed id>`) are written in one MULTI/EXEC, and bar message ids are derived
from (feed id, position), so even a lost cursor re-emits the same ids, which consumers dedup.
Rows that fail validation are dead-lettered with the reason, never silently dropped.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import linecache
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from ark_runtime import pipeline
from ark_runtime.agents.base import Agent, ConfigError
from ark_runtime.agents.consumer import log_hops
from ark_runtime.bus.envelope import Envelope, derive_id
from ark_runtime.bus.shards import SHARDED_AGENT, orphaned, shard_names, shard_of
from ark_runtime.bus.streams import DEAD_STREAM, inbox, kyle_cursor_key, replicated
from ark_runtime.host.layout import state_dir
from ark_runtime.market import SAMPLE_BARS, Bar, BarError, ReplayAdapter, SyntheticAdapter
from ark_runtime.validators import ValidationError, validate_path, validate_symbol

# Paced: the shortest wait between two emits (bars due meanwhile go in one EXEC).
PACE_TICK_S = 0.005
# Idle after its feed ended: how often Kyle checks that Redis still holds its cursor.
CURSOR_CHECK_S = 1.0


class Kyle(Agent):
    name = "kyle"

    def setup(self) -> None:
        self.bad_rows: list[BarError] = []
        adapter, feed_key = self._adapter()
        self.adapter = adapter
        # A feed that can be read again from any position (a file, the seeded synthetic
        # walk): when Redis comes back older than what Kyle committed, the lost bars are
        # emitted again. A live feed sets `replayable = False`: then the gap is critical.
        self.replayable = bool(getattr(adapter, "replayable", True))
        self.feed_id = hashlib.sha256(feed_key.encode()).hexdigest()[:16]
        self.cursor_key = kyle_cursor_key(self.feed_id)
        # Joey's shards: bar -> targets[crc32(symbol) % N]; one shard is ark:stream:joey.
        self.shards = self.config.joey_shards
        self.targets = [inbox(name) for name in shard_names(self.shards)]
        self.target = self.targets[0]
        # The other readers of bars (the executor fills and closes positions from them):
        # each gets its own copy, addressed to it, in the same EXEC. Not counted in the
        # backlog: a stopped executor must not stall the feed (its inbox is capped by MAXLEN).
        self.side_readers = [name for name in pipeline.consumers("market.bar")
                             if name not in (SHARDED_AGENT, "bus")]
        self._orphans_checked_at = float("-inf")
        self._orphans: dict[str, int] = {}
        self.max_backlog = self.config.kyle_max_backlog
        self.rate = self.config.feed_rate
        self.ttl = self.config.bar_ttl
        start = int(self.r.get(self.cursor_key) or 0)
        # Bad rows before the cursor were reported by the run that passed them.
        self._suppress_bad = start > 0
        self._open_at(start)
        self._next_cursor_check = 0.0
        self._gap_reported: tuple[int, int] | None = None
        self.emitted = 0
        self._unsent: tuple[list[Envelope], list[BarError]] | None = None
        self._reconcile_needed = False
        self._next_at = time.monotonic()
        self._backlog = self._longest_inbox()
        self.log.info("feed %s from position %d", feed_key, start,
                      extra={"event": "feed_open", "feed_id": self.feed_id, "position": start})

    def _open_at(self, start: int) -> None:
        """The feed from position `start` (bad rows before it were reported already)."""
        self._suppress_bad = start > 0
        self.position = start
        self.bars: Iterator[Bar] = iter(self.adapter)  # type: ignore[call-overload]
        for _ in range(start):
            if next(self.bars, None) is None:
                break
        self._suppress_bad = False
        self.exhausted = False

    def _on_bad_row(self, error: BarError) -> None:
        if not self._suppress_bad:
            self.bad_rows.append(error)

    def _adapter(self) -> tuple[object, str]:
        cfg = self.config
        kind = cfg.feed or ("replay" if cfg.feed_path else "sample")
        if kind == "sample":
            return ReplayAdapter(SAMPLE_BARS, on_error=self._on_bad_row), \
                "sample:" + _file_hash(SAMPLE_BARS)
        if kind == "replay":
            if not cfg.feed_path:
                raise ConfigError("ARK_FEED=replay needs ARK_FEED_PATH")
            base = cfg.feed_dir or state_dir(self.env) / "feeds"
            try:
                path = validate_path(cfg.feed_path, base)
            except ValidationError as exc:
                raise ConfigError(f"ARK_FEED_PATH: {exc}") from None
            if not path.is_file():
                raise ConfigError(f"ARK_FEED_PATH: {path} does not exist")
            try:
                adapter = ReplayAdapter(path, on_error=self._on_bad_row)
            except ValueError as exc:
                raise ConfigError(f"ARK_FEED_PATH: {exc}") from None
            return adapter, f"replay:{path}:{_file_hash(path)}"
        try:  # synthetic
            symbols = [validate_symbol(s.strip()) for s in cfg.feed_symbols.split(",")]
            adapter = SyntheticAdapter(symbols, seed=cfg.feed_seed, bars=cfg.feed_bars)
        except ValueError as exc:
            raise ConfigError(f"ARK_FEED_SYMBOLS: {exc}") from None
        return adapter, f"synthetic:{','.join(symbols)}:{cfg.feed_seed}:{cfg.feed_bars}"

    # -- loop --------------------------------------------------------------------------

    def step(self) -> None:
        if self._reconcile_needed:
            self._reconcile()
        if self.exhausted and time.monotonic() >= self._next_cursor_check:
            # Idle after the last bar: still look that Redis kept what was emitted (a Redis
            # that restarted with older state is seen here, or as an error on this GET).
            self._next_cursor_check = time.monotonic() + CURSOR_CHECK_S
            self._check_cursor(int(self.r.get(self.cursor_key) or 0))
        if self._unsent is None:
            if self.exhausted or self.paused_cached() or self._backlogged() or \
                    self._orphans_waiting():
                self.stop_event.wait(0.2)
                return
            count = self._due() if self.rate > 0 else self.settings.batch
            if count == 0:
                return
            batch = list(itertools.islice(self.bars, count))
            if len(batch) < count:
                self.exhausted = True
            # Held until Redis confirms it: a failed EXEC must not drop bars the iterator
            # has already handed out.
            self._unsent = self._envelopes(batch), self.bad_rows
            self.bad_rows = []
        envelopes, bad = self._unsent
        self._commit(envelopes, bad)
        self._unsent = None
        if self.rate > 0:
            # At most a second of catch-up after a stall, never a burst of the whole backlog.
            self._next_at = max(self._next_at + len(envelopes) / self.rate,
                                time.monotonic() - 1)
        if self.exhausted:
            self.log.info("feed exhausted after %d bars; idle until stopped", self.position,
                          extra={"event": "feed_exhausted", "position": self.position})

    def _due(self) -> int:
        """Paced: the bars due by now (sent together, one EXEC), or 0 after waiting. Waking
        at most every PACE_TICK_S batches a fast rate (2,000 bars/s: ~10 bars per EXEC)
        instead of one round trip per bar, for at most that much added latency."""
        now = time.monotonic()
        if now < self._next_at:
            self.stop_event.wait(max(self._next_at - now, PACE_TICK_S))
            return 0
        return min(self.settings.batch, 1 + int((now - self._next_at) * self.rate))

    def recover(self) -> None:
        self._reconcile_needed = True

    def _reconcile(self) -> None:
        """After a Redis error: did the held batch's EXEC run before the connection broke,
        and does Redis still hold everything committed before it?"""
        self._reconcile_needed = False
        cursor = int(self.r.get(self.cursor_key) or 0)
        if self._unsent is not None:
            envelopes, bad = self._unsent
            if cursor >= self.position + len(envelopes):
                self.log.info("batch was committed before the connection broke",
                              extra={"event": "reconciled", "position": cursor})
                self._unsent = None
                self._committed(envelopes, bad, time.time())
                return
        self._check_cursor(cursor)

    def _check_cursor(self, cursor: int) -> None:
        """Redis's cursor behind what Kyle committed: Redis came back with older (or no)
        state, and the bars from `cursor` on are gone from the bus. Emit them again (same
        message ids: HRM's store refuses any plan it decided already) when the feed can be
        replayed; otherwise stop the pipeline with a critical error naming the gap."""
        if cursor >= self.position:
            return
        gap = f"bars {cursor}..{self.position - 1} of feed {self.feed_id}"
        if not self.replayable:
            if self._gap_reported == (cursor, self.position):
                return  # reported once; the pause holds Kyle until an operator clears it
            self._gap_reported = (cursor, self.position)
            message = (f"Redis came back with older state: {gap} were lost from the bus and "
                       "this live feed cannot replay them; decisions after the gap would use "
                       "windows without them")
            self.log.critical(message, extra={"event": "redis_state_regressed",
                                              "cursor": cursor, "position": self.position})
            self._report("critical", "redis_state_regressed", message)
            return
        self.log.error("Redis came back with older state: replaying %s", gap,
                       extra={"event": "redis_state_regressed", "cursor": cursor,
                              "position": self.position})
        self._report("error", "redis_state_regressed", f"Redis came back with older state; "
                     f"replaying {gap} from the feed")
        self._unsent = None
        self._open_at(cursor)

    def _backlogged(self) -> bool:
        # Backpressure: a stalled Joey must not make Kyle grow the stream without bound. The
        # length comes free with each EXEC; asked again only while over the limit.
        if self.max_backlog <= 0 or self._backlog < self.max_backlog:
            return False
        self._backlog = self._longest_inbox()
        return self._backlog >= self.max_backlog

    def _longest_inbox(self) -> int:
        with self.r.pipeline(transaction=False) as pipe:
            for target in self.targets:
                pipe.xlen(target)
            return max(int(n) for n in pipe.execute())

    def _orphans_waiting(self) -> bool:
        """After the shard count shrank: bars still waiting in a shard stream no Joey reads
        now. Emitting on would pass them (their symbols' order breaks), so Kyle holds, says
        which streams, and looks again every 5 s; nothing is dropped (see AGENT_PROTOCOL)."""
        now = time.monotonic()
        # Once at start (a shard count changes only with a restart), then while blocked.
        if not self._orphans and self._orphans_checked_at > float("-inf") or \
                now - self._orphans_checked_at < 5.0:
            return bool(self._orphans)
        self._orphans_checked_at = now
        found = orphaned(self.r, self.shards)
        if found and found != self._orphans:
            message = (f"ARK_JOEY_SHARDS={self.shards} but {', '.join(sorted(found))} still "
                       f"hold {sum(found.values())} unfinished bars; holding the feed: run the "
                       "previous shard count until they drain")
            self.log.error(message, extra={"event": "reshard_blocked", "streams": found})
            self._report("error", "reshard_blocked", message)
        self._orphans = found
        return bool(found)

    def _envelopes(self, batch: list[Bar]) -> list[Envelope]:
        return [Envelope.new("market.bar", bar, from_agent="kyle", to_agent="joey",
                             message_id=derive_id(self.feed_id, str(self.position + i)),
                             ttl=self.ttl)
                for i, bar in enumerate(batch)]

    def _commit(self, envelopes: list[Envelope], bad: list[BarError]) -> None:
        if not envelopes and not bad:
            return
        sent_at = time.time()
        with self.r.pipeline(transaction=True) as pipe:
            for env in envelopes:
                target = self.targets[shard_of(env.payload["symbol"], self.shards)] \
                    if self.shards > 1 else self.target
                pipe.xadd(target, env.to_fields(), maxlen=self.settings.maxlen,
                          approximate=True)
                for reader in self.side_readers:
                    copy = env.model_copy(update={
                        "to_agent": reader, "message_id": derive_id(env.message_id, reader)})
                    pipe.xadd(inbox(reader), copy.to_fields(), maxlen=self.settings.maxlen,
                              approximate=True)
            for error in bad:
                pipe.xadd(DEAD_STREAM, _dead_row(error), maxlen=self.settings.side_maxlen,
                          approximate=True)
            pipe.set(self.cursor_key, self.position + len(envelopes))
            for target in self.targets:
                pipe.xlen(target)
            self._backlog = max(int(n) for n in pipe.execute()[-len(self.targets):])
        # The cursor moved: read on from the feed once a replica has it too (issue #20).
        self._replication(replicated(self.r, self.settings))
        self._committed(envelopes, bad, sent_at)

    def _committed(self, envelopes: list[Envelope], bad: list[BarError], sent_at: float) -> None:
        self.position += len(envelopes)
        self.emitted += len(envelopes)
        # One INFO line per EXEC listing every bar (ark trace expands it), not one per bar.
        log_hops(self.log, sent_at, [
            {"event": "emitted", "correlation_id": env.correlation_id,
             "message_id": env.message_id, "emitted_id": env.message_id, "type": env.type,
             "to_agent": "joey", "msg": f"emitted market.bar {env.payload['symbol']} to joey"}
            for env in envelopes])
        for error in bad:
            self.log.warning("invalid feed row dead-lettered: %s", error,
                             extra={"event": "dead_lettered"})
            self._report("warning", "invalid_bar", str(error))


def _dead_row(error: BarError) -> dict[str, str]:
    return {
        "reason": f"invalid bar: {error.message}",
        "agent": "kyle",
        "source_stream": f"feed:{error.source}",
        "source_id": f"line {error.line}",
        "deliveries": "0",
        "correlation_id": "",
        "ts": datetime.now(UTC).isoformat(),
        "original": json.dumps({"source": error.source, "line": error.line,
                                "text": linecache.getline(error.source, error.line)[:4000]}),
    }


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]
