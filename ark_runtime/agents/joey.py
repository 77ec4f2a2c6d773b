"""Joey: rolling windows per symbol -> pattern.detected for Kenny.

The windows are Joey's state. Each bar is appended to WINDOW_KEY<symbol> (a Redis list
trimmed to the window size), with the symbol's indicator accumulators (ACC_KEY, see
rolling.py) and MA-cross side (SIDE_KEY), in the same atomic commit that acks the bar, so the
saved state always matches exactly the bars acknowledged: a restart, even after SIGKILL,
resumes with the same windows and accumulators and detects the same patterns, bit for bit.
Per bar, not once per batch: a batch's script that fails half-way (a Redis error inside it)
keeps the first half's acks, and their bars must be saved with them.
Joey is stateful per symbol: each symbol must be handled by one Joey process. To scale out,
run ARK_JOEY_SHARDS of them (instances joey, joey-1, ...; bus/shards.py): Kyle routes each bar
by crc32(symbol) to one shard's inbox. The state keys are per symbol, not per shard, so a
shard count change (after the streams drained) finds every symbol's state wherever it lands.
The in-memory detector only runs ahead of Redis between handle() and the commit; when that
commit fails, the detector is rebuilt from Redis before the next message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import msgspec

from ark_runtime.agents.base import ConfigError
from ark_runtime.agents.consumer import ConsumerAgent, Output
from ark_runtime.bus.envelope import Envelope, derive_id
from ark_runtime.bus.shards import shard_name, shard_of
from ark_runtime.bus.streams import Delivery, inbox, slot_tag
from ark_runtime.market import Bar
from ark_runtime.patterns import PatternDetector

# Joey's keys carry its inbox's hash tag (one Redis Cluster slot with the inbox); the
# LEGACY_* names are read once after an upgrade so the windows survive it.
WINDOW_KEY = f"ark:state:{slot_tag('joey')}:joey:window:"
LEGACY_WINDOW_KEY = "ark:state:joey:window:"
LEGACY_SIDE_KEY = "ark:state:joey:side"
# The detector's other per-symbol state: the confirmed side of the fast/slow averages (the MA
# cross hysteresis), saved and restored through PatternDetector's cross_side API.
SIDE_KEY = f"ark:state:{slot_tag('joey')}:joey:side"
# Each symbol's indicator accumulators, for a bit-identical restart (PatternDetector.snapshot).
ACC_KEY = f"ark:state:{slot_tag('joey')}:joey:acc"


class Joey(ConsumerAgent):
    name = "joey"
    accepts = ("market.bar",)

    def __init__(self, env: Mapping[str, str] | None = None, shard: int = 0) -> None:
        super().__init__(env)
        self.shard = shard
        self.instance = shard_name(shard)

    def setup(self) -> None:
        # A shard past the count never gets here: `ark agent` refuses it with 78 first.
        self.shards = self.config.joey_shards
        super().setup()
        try:
            self.window_size = self.config.joey_window
            self.detector = PatternDetector(window=self.window_size)
        except ValueError as exc:
            raise ConfigError(f"ARK_JOEY_WINDOW: {exc}") from None
        self._reload = False
        self._added: list[list[str]] = []  # the state writes of the bar just handled
        self._restore()

    def discard_uncommitted(self) -> None:
        # The detector advanced in handle(); the commit that saves that advance failed or
        # its reply was lost. Redis holds exactly the committed windows: reload from there
        # before the next message, so the redelivered bar is detected again (not "stale").
        self._reload = True

    def process_batch(self, deliveries: list[Delivery]) -> None:
        # Checked per batch: a handler failure cuts the batch (what was handled before it is
        # committed first), so the reload sees every committed bar and the next bar of the
        # same delivery never sees uncommitted state.
        rest = list(deliveries)
        while rest:
            if self._reload:
                self.detector = PatternDetector(window=self.window_size)
                self._restore()  # a Redis error here is retried by the loop; the flag stays
                self._reload = False
            rest = self._one_batch(rest)

    def _restore(self) -> None:
        restored = self._restore_windows(WINDOW_KEY)
        restored += self._restore_windows(LEGACY_WINDOW_KEY)  # symbols not saved since
        for symbol, raw in self.r.hgetall(ACC_KEY).items():
            if not self._mine(symbol):
                continue
            try:
                self.detector.restore_snapshot(symbol, json.loads(raw))
            except (ValueError, KeyError) as exc:
                # The accumulators are then rebuilt from the window: equal to the reference
                # within the stated tolerance, only not bit-identical to an unbroken run.
                self.log.warning("not restoring indicator state of %s: %s", symbol, exc)
        sides = {**self.r.hgetall(LEGACY_SIDE_KEY), **self.r.hgetall(SIDE_KEY)}
        for symbol, side in sides.items():
            if not self._mine(symbol):
                continue
            try:
                self.detector.restore_cross_side(symbol, int(side))
            except ValueError as exc:  # a corrupt entry costs a warm-up, not a crash
                self.log.warning("skipping saved cross side of %s: %s", symbol, exc)
        if restored:
            self.log.info("restored %d bars of window state", restored,
                          extra={"event": "state_restored", "bars": restored})

    def _restore_windows(self, prefix: str) -> int:
        restored = 0
        for key in sorted(self.r.scan_iter(f"{prefix}*", count=500)):
            symbol = key[len(prefix):]
            if not self._mine(symbol) or self.detector.window.last(symbol) is not None:
                continue  # another shard's symbol, or already restored under the current name
            for raw in self.r.lrange(key, 0, -1):
                try:
                    self.detector.window.add(Bar.model_validate_json(raw))
                    restored += 1
                except ValueError as exc:  # a corrupt entry costs a warm-up, not a crash
                    self.log.warning("skipping saved bar in %s: %s", key, exc)
        return restored

    def _mine(self, symbol: str) -> bool:
        """Whether this shard handles `symbol` (every symbol when unsharded)."""
        return self.shards == 1 or shard_of(symbol, self.shards) == self.shard

    def handle(self, envelope: Envelope) -> list[Output]:
        bar = envelope.body()
        assert isinstance(bar, Bar)
        out = []
        patterns = self.detector.update(bar)
        # A stale (not newer) bar is ignored by the detector; then there is no state to save.
        self._added = self._bar_writes(bar) if self.detector.window.last(bar.symbol) is bar \
            else []
        for i, pattern in enumerate(patterns):
            out.append((inbox("kenny"), Envelope.new(
                "pattern.detected", pattern, from_agent="joey", to_agent="kenny",
                parent=envelope, message_id=derive_id(envelope.message_id, f"joey:{i}"),
            )))
        return out

    def state_writes(self, envelope: Envelope) -> list[list[str]]:
        return self._added

    def _bar_writes(self, bar: Bar) -> list[list[str]]:
        # Taken right after the detector took the bar: what a restart must find if this bar's
        # ack commits (msgspec: ~1 us for the accumulators' exact float text).
        symbol = bar.symbol
        key = f"{WINDOW_KEY}{symbol}"
        commands = [
            ["RPUSH", key, bar.model_dump_json()],
            ["LTRIM", key, str(-self.window_size), "-1"],
            ["HSET", ACC_KEY, symbol, _ENCODE(self.detector.snapshot(symbol)).decode()]]
        side = self.detector.cross_side(symbol)
        if side is not None:
            commands.append(["HSET", SIDE_KEY, symbol, str(side)])
        return commands


_ENCODE = msgspec.json.Encoder().encode
