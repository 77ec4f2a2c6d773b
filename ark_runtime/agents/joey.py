"""Joey: rolling windows per symbol -> pattern.detected for Kenny.

The windows are Joey's state. Each bar is appended to `ark:state:joey:window:<symbol>` (a
Redis list trimmed to the window size) in the same atomic commit that acks the bar, so the saved
windows always match exactly the bars acknowledged: a restart, even after SIGKILL, resumes
with the same windows and detects the same patterns. Joey is stateful per symbol: run one
active Joey per pipeline (a second consumer would see only part of each symbol's bars).
The in-memory detector only runs ahead of Redis between handle() and the commit; when that
commit fails, the detector is rebuilt from Redis before the next message.
"""

from __future__ import annotations

from ark_runtime.agents.base import ConfigError
from ark_runtime.agents.consumer import ConsumerAgent, Output
from ark_runtime.bus.envelope import Envelope, derive_id
from ark_runtime.bus.streams import Delivery, inbox
from ark_runtime.market import Bar
from ark_runtime.patterns import PatternDetector

WINDOW_KEY = "ark:state:joey:window:"
# The detector's other per-symbol state: the confirmed side of the fast/slow averages (the MA
# cross hysteresis), saved and restored through PatternDetector's cross_side API.
SIDE_KEY = "ark:state:joey:side"


class Joey(ConsumerAgent):
    name = "joey"
    accepts = ("market.bar",)

    def setup(self) -> None:
        super().setup()
        try:
            self.window_size = self.config.joey_window
            self.detector = PatternDetector(window=self.window_size)
        except ValueError as exc:
            raise ConfigError(f"ARK_JOEY_WINDOW: {exc}") from None
        self._reload = False
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
        restored = 0
        for key in sorted(self.r.scan_iter(f"{WINDOW_KEY}*", count=500)):
            for raw in self.r.lrange(key, 0, -1):
                try:
                    self.detector.window.add(Bar.model_validate_json(raw))
                    restored += 1
                except ValueError as exc:  # a corrupt entry costs a warm-up, not a crash
                    self.log.warning("skipping saved bar in %s: %s", key, exc)
        for symbol, side in self.r.hgetall(SIDE_KEY).items():
            try:
                self.detector.restore_cross_side(symbol, int(side))
            except ValueError as exc:  # a corrupt entry costs a warm-up, not a crash
                self.log.warning("skipping saved cross side of %s: %s", symbol, exc)
        if restored:
            self.log.info("restored %d bars of window state", restored,
                          extra={"event": "state_restored", "bars": restored})

    def handle(self, envelope: Envelope) -> list[Output]:
        bar = envelope.body()
        assert isinstance(bar, Bar)
        out = []
        patterns = self.detector.update(bar)
        # A stale (not newer) bar is ignored by the detector; then there is no state to save.
        self._added = bar if self.detector.window.last(bar.symbol) is bar else None
        for i, pattern in enumerate(patterns):
            out.append((inbox("kenny"), Envelope.new(
                "pattern.detected", pattern, from_agent="joey", to_agent="kenny",
                parent=envelope, message_id=derive_id(envelope.message_id, f"joey:{i}"),
            )))
        return out

    def state_writes(self, envelope: Envelope) -> list[list[str]]:
        if self._added is None:
            return []
        symbol = self._added.symbol
        key = f"{WINDOW_KEY}{symbol}"
        commands = [["RPUSH", key, self._added.model_dump_json()],
                    ["LTRIM", key, str(-self.window_size), "-1"]]
        side = self.detector.cross_side(symbol)
        if side is not None:
            commands.append(["HSET", SIDE_KEY, symbol, str(side)])
        return commands
