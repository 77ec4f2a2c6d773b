"""Joey: rolling windows per symbol -> pattern.detected for Kenny."""

from __future__ import annotations

from ark_runtime.agents.base import ConfigError
from ark_runtime.agents.consumer import ConsumerAgent, Output
from ark_runtime.bus.envelope import Envelope, derive_id
from ark_runtime.bus.streams import inbox
from ark_runtime.market import Bar
from ark_runtime.patterns import PatternDetector


class Joey(ConsumerAgent):
    name = "joey"
    accepts = ("market.bar",)

    def setup(self) -> None:
        super().setup()
        try:
            self.detector = PatternDetector(window=int(self.env.get("ARK_JOEY_WINDOW", "60")))
        except ValueError as exc:
            raise ConfigError(f"ARK_JOEY_WINDOW: {exc}") from None

    def handle(self, envelope: Envelope) -> list[Output]:
        bar = envelope.body()
        assert isinstance(bar, Bar)
        out = []
        for i, pattern in enumerate(self.detector.update(bar)):
            out.append((inbox("kenny"), Envelope.new(
                "pattern.detected", pattern, from_agent="joey", to_agent="kenny",
                parent=envelope, message_id=derive_id(envelope.message_id, f"joey:{i}"),
            )))
        return out
