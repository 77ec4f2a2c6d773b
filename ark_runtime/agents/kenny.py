"""Kenny: pattern -> paper trade plan for HRM. The only agent given trading credentials
(by its unit's env files); this module reads none: plans are paper only."""

from __future__ import annotations

from ark_runtime.agents.base import ConfigError
from ark_runtime.agents.consumer import ConsumerAgent, Output
from ark_runtime.bus.envelope import Envelope, derive_id
from ark_runtime.bus.streams import inbox
from ark_runtime.patterns import Pattern
from ark_runtime.planner import AccountConfig, PlanError, plan_trade


class Kenny(ConsumerAgent):
    name = "kenny"
    accepts = ("pattern.detected",)

    def setup(self) -> None:
        super().setup()
        try:
            self.account = AccountConfig(account_size=self.config.account_size,
                                         risk_per_trade=self.config.risk_per_trade)
        except ValueError as exc:
            raise ConfigError(f"ARK_ACCOUNT_SIZE/ARK_RISK_PER_TRADE: {exc}") from None

    def handle(self, envelope: Envelope) -> list[Output]:
        pattern = envelope.body()
        assert isinstance(pattern, Pattern)
        try:
            plan = plan_trade(pattern, self.account)
        except PlanError as exc:
            # A pattern that cannot be planned is an outcome, not a fault: ack, no plan.
            self.log.warning("no plan: %s", exc, extra={"event": "no_plan"})
            return []
        return [(inbox("hrm"), Envelope.new(
            "trade.plan", plan, from_agent="kenny", to_agent="hrm", parent=envelope,
            message_id=derive_id(envelope.message_id, "kenny"),
        ))]
