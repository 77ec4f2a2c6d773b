"""HRM's risk state and breaker resets over Redis (AGENT_04), for the operator's side: `ark
hrm`, the console and the exporter read the state HRM published, and ask HRM for a reset by
queueing `hrm.breaker_reset` in its inbox. Nothing here opens HRM's store."""

from __future__ import annotations

from typing import Any

from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.keys import inbox, risk_state_key
from ark_runtime.bus.registry import BreakerReset
from ark_runtime.hrm.risk import parse_risk_state

__all__ = ["read_risk_state", "reset_request", "send_reset"]


def reset_request(breaker: str, reason: str, by: str) -> Envelope:
    """The `hrm.breaker_reset` message asking HRM to clear `breaker` (validated here: a bad
    name or an empty reason is refused before anything reaches the bus)."""
    body = BreakerReset(breaker=breaker, reason=reason, by=by)  # type: ignore[arg-type]
    return Envelope.new("hrm.breaker_reset", body, from_agent="operator", to_agent="hrm",
                        priority=9)


def send_reset(client: Any, breaker: str, reason: str, by: str) -> Envelope:
    """Queue a reset in HRM's inbox (any host with Redis can: HRM applies it in its store's
    transaction, exactly once, and publishes the new state)."""
    env = reset_request(breaker, reason, by)
    client.xadd(inbox("hrm"), env.to_fields())
    return env


def read_risk_state(client: Any) -> dict[str, Any] | None:
    """The published state, from Redis (sync client)."""
    return parse_risk_state(client.get(risk_state_key()))
