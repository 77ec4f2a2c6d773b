"""The message type registry: every `type` an envelope may carry, and its payload model.

An envelope whose type is not registered here, or whose payload does not validate against
the registered model, is refused (and dead-lettered by the consumer). `docs/AGENT_PROTOCOL.md`
is rendered from this table, so the published protocol cannot drift from the code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ark_runtime import pipeline
from ark_runtime.hrm import Decision
from ark_runtime.planner import TradePlan
from ark_runtime.validators import Symbol

# Pipeline order (ark_runtime/pipeline.py): a critical error pauses every agent upstream.
PIPELINE: tuple[str, ...] = pipeline.NAMES
# Non-agent endpoints: "operator" (CLI/admin) and "bus" (broadcast streams: errors, decisions).
ENDPOINTS: tuple[str, ...] = (*PIPELINE, "operator", "bus")

Severity = Literal["info", "warning", "error", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "error", "critical")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorRaised(_Payload):
    """An agent reports a failure. `critical` pauses the agents upstream of `agent`."""

    agent: str = Field(description="agent (or operator) that hit the error")
    severity: Severity
    error: str = Field(max_length=200, description="exception class or short error code")
    message: str = Field(max_length=2000)
    related_message_id: str | None = Field(
        default=None, description="the message being processed when it failed, if any"
    )


class ControlPause(_Payload):
    """Pause set: `agents` stop emitting until a control.resume clears `origin`."""

    origin: str = Field(description="agent whose critical error caused the pause")
    agents: list[str] = Field(description="the agents that stop emitting")
    reason: str = Field(max_length=2000)
    by: str = Field(description="who set it: an agent name or operator:<user>")


class ControlResume(_Payload):
    """Pause cleared: the listed origins no longer hold anyone."""

    origins: list[str]
    by: str
    reason: str = Field(default="", max_length=2000)


class BreakerReset(_Payload):
    """An operator clears one of HRM's breakers (`ark hrm breaker reset`, the console)."""

    breaker: Literal["daily_loss", "loss_streak"]
    reason: str = Field(min_length=1, max_length=2000)
    by: str = Field(min_length=1, max_length=200, description="operator:<user>")


class HrmVerdict(_Payload):
    """HRM's decision together with the plan it judged (the chatter feed shows both)."""

    symbol: Symbol
    plan: TradePlan = Field(description="the trade.plan payload that was evaluated")
    decision: Decision = Field(description="approved, violations, warnings, breaker state")



@dataclass(frozen=True)
class MessageType:
    name: str
    model: type[BaseModel]
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    description: str


REGISTRY: dict[str, MessageType] = {}


def register(
    name: str,
    model: type[BaseModel],
    producers: tuple[str, ...],
    consumers: tuple[str, ...],
    description: str,
) -> None:
    if name in REGISTRY:
        raise ValueError(f"message type {name!r} is already registered")
    REGISTRY[name] = MessageType(name, model, producers, consumers, description)


def payload_model(name: str) -> type[BaseModel]:
    try:
        return REGISTRY[name].model
    except KeyError:
        raise KeyError(
            f"unknown message type {name!r}; registered: {', '.join(sorted(REGISTRY))}"
        ) from None


def _model(path: str) -> type[BaseModel]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _register_builtin() -> None:
    # Domain payloads are the domain modules' own models: one schema, no copies. Who produces
    # and who consumes each follows from the pipeline declaration.
    for message in pipeline.MESSAGES:
        register(message.type, _model(message.model), pipeline.producers(message.type),
                 pipeline.consumers(message.type), message.description)
    register(
        "error.raised", ErrorRaised, (*PIPELINE, "operator"), ("bus",),
        "An error report on the error bus (`ark:stream:errors`).",
    )
    register(
        "control.pause", ControlPause, (*PIPELINE, "operator"), ("bus",),
        "A pause was set after a critical error; upstream producers stop emitting.",
    )
    register(
        "hrm.breaker_reset", BreakerReset, ("operator",), ("hrm",),
        "An operator clears an HRM breaker (audited where it was asked for).",
    )
    register(
        "control.resume", ControlResume, ("operator",), ("bus",),
        "A pause was cleared (`ark errors clear`); producers resume.",
    )


_register_builtin()
