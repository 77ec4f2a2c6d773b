"""The pipeline, declared once: which agents exist, in which order, what each reads and emits.

Every other list of agents derives from `AGENTS` below: the bus's endpoints and message-type
producers/consumers (bus/registry.py), the agent-name validator, the settings' readers and
credential domains, the systemd units the exporter watches, the console's log sources, the
compose services, the placement of agents over hosts (ark_ops/placement.py) and the Ansible
role (plugins/filter/ark_pipeline.py). tests/unit/test_pipeline_declaration.py checks that no
other product file spells the list out again.

This module is a leaf: it imports nothing from ARK, so the agents, the host wing, the API,
the settings and the control node (ark_ops) can all read it. The agents' classes are named
by import path and loaded only by the process that runs one.

Adding an agent (docs/AGENT_PROTOCOL.md, "Adding an agent"): write its class, add one
`Agent(...)` entry here in flow order (and, if it emits a new message type, one `Message`
entry), write its tests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    """A domain message type: its name on the wire, its payload model (import path
    `module:Class`) and one line for the published protocol."""

    type: str
    model: str
    description: str


@dataclass(frozen=True)
class Agent:
    """One agent of the pipeline.

    name      instance/unit/log/group name (`ark-agent@<name>`, `<name>.log`, inbox
              `ark:stream:<name>`, compose service `<name>`)
    cls       its class, `module:Class`, imported only when the agent runs
    consumes  the message type its inbox carries (None: it reads a feed, not the bus)
    emits     the message type it produces (None: it emits nothing downstream)
    domains   the credential domains its unit loads (SEC_01; least privilege)
    sharded   runs as N instances split by symbol (`<name>`, `<name>-1` .. `<name>-<N-1>`)
    also_consumes  further types its inbox carries besides the flow's (`consumes`): the
              executor also reads Kyle's bars, HRM the executor's fills, closes and marks
    also_emits     further types it emits besides the flow's: a broadcast (HRM's verdicts on
              their side stream) or feedback upstream (the executor's fills and closes)
    """

    name: str
    cls: str
    consumes: str | None
    emits: str | None
    domains: tuple[str, ...] = ("infrastructure", "features")
    sharded: bool = False
    also_consumes: tuple[str, ...] = ()
    also_emits: tuple[str, ...] = ()

    @property
    def inputs(self) -> tuple[str, ...]:
        return (*((self.consumes,) if self.consumes else ()), *self.also_consumes)

    @property
    def outputs(self) -> tuple[str, ...]:
        return (*((self.emits,) if self.emits else ()), *self.also_emits)


MESSAGES: tuple[Message, ...] = (
    Message("market.bar", "ark_runtime.market:Bar", "One validated OHLCV bar for one symbol."),
    Message("pattern.detected", "ark_runtime.patterns:Pattern",
            "A pattern Joey found in a symbol's rolling window, with its confidence."),
    Message("trade.plan", "ark_runtime.planner:TradePlan",
            "A paper trade plan built from a pattern: entry, ATR stop, target, size."),
    Message("hrm.decision", "ark_runtime.bus.registry:HrmVerdict",
            "HRM's verdict on a plan: approved or rejected, with every violated rule."),
    Message("trade.approved", "ark_runtime.bus.registry:HrmVerdict",
            "An approved plan for the executor (HRM's verdict, size multiplier included)."),
    Message("position.filled", "ark_runtime.execution.paper:PositionFilled",
            "The executor filled an approved plan at the next bar's open (paper)."),
    Message("position.closed", "ark_runtime.execution.paper:PositionClosed",
            "The executor closed a position (stop, target, time limit, session end) with "
            "its P&L net of fees; HRM's breakers count it."),
    Message("position.marked", "ark_runtime.execution.paper:PositionMarked",
            "A symbol's latest bar close while the executor holds open positions in it (with "
            "its costs): HRM marks its open P&L to it."),
)

# Flow order: a critical error pauses every agent upstream of the one that failed.
AGENTS: tuple[Agent, ...] = (
    Agent("kyle", "ark_runtime.agents.kyle:Kyle", consumes=None, emits="market.bar"),
    Agent("joey", "ark_runtime.agents.joey:Joey", consumes="market.bar",
          emits="pattern.detected", sharded=True),
    Agent("kenny", "ark_runtime.agents.kenny:Kenny", consumes="pattern.detected",
          emits="trade.plan", domains=("infrastructure", "trading", "features")),
    Agent("hrm", "ark_runtime.agents.hrm:Hrm", consumes="trade.plan", emits="trade.approved",
          also_consumes=("position.filled", "position.closed", "position.marked"),
          also_emits=("hrm.decision",)),
    Agent("executor", "ark_runtime.agents.executor:Executor", consumes="trade.approved",
          emits=None, also_consumes=("market.bar",),
          also_emits=("position.filled", "position.closed", "position.marked")),
)

# --- derived views (nothing below names an agent) -------------------------------------------

NAMES: tuple[str, ...] = tuple(a.name for a in AGENTS)
BY_NAME: dict[str, Agent] = {a.name: a for a in AGENTS}
# Agents that read an inbox through a consumer group (the first one reads a feed).
CONSUMERS: tuple[str, ...] = tuple(a.name for a in AGENTS if a.consumes)
SHARDED: tuple[str, ...] = tuple(a.name for a in AGENTS if a.sharded)
MESSAGE_TYPES: dict[str, Message] = {m.type: m for m in MESSAGES}

API = "api"
API_UNIT = "ark-api.service"
# Log files the console reads (`<source>.log` under the log dir).
LOG_SOURCES: tuple[str, ...] = (*NAMES, API)
# docker-compose.yml's services ARK needs, the store first.
COMPOSE_SERVICES: tuple[str, ...] = ("redis", API, *NAMES)


def unit(instance: str) -> str:
    """The systemd unit of an agent instance: `ark-agent@joey-2.service`."""
    return f"ark-agent@{instance}.service"


# The units the exporter watches by default (one instance per agent; shards are extra).
UNITS: tuple[str, ...] = (API_UNIT, *(unit(n) for n in NAMES))


def producers(message_type: str) -> tuple[str, ...]:
    return tuple(a.name for a in AGENTS if message_type in a.outputs)


def consumers(message_type: str) -> tuple[str, ...]:
    """Agents whose inbox carries the type, in flow order; `("bus",)` for a type nobody
    reads from an inbox (broadcast on its side stream)."""
    return tuple(a.name for a in AGENTS if message_type in a.inputs) or ("bus",)


def downstream(name: str) -> str | None:
    """The agent that reads what `name` emits (None at the end of the pipeline)."""
    emits = BY_NAME[name].emits
    return next((a.name for a in AGENTS if emits and a.consumes == emits), None)


def instances(shards: int) -> list[str]:
    """Every agent instance in flow order, a sharded agent once per shard: shard 0 is
    `<name>`, shard k `<name>-k`."""
    out: list[str] = []
    for a in AGENTS:
        out.append(a.name)
        if a.sharded:
            out += [f"{a.name}-{k}" for k in range(1, shards)]
    return out


def unit_domains() -> dict[str, list[str]]:
    """Which credential domains each agent's unit loads (settings add the API's and the
    host commands')."""
    return {a.name: list(a.domains) for a in AGENTS}


def view(what: str) -> list[str]:
    """A named list for the Ansible role (plugins/filter/ark_pipeline.py)."""
    views = {"agents": NAMES, "consumers": CONSUMERS, "sharded": SHARDED,
             "log_sources": LOG_SOURCES, "units": UNITS, "compose_services": COMPOSE_SERVICES}
    try:
        return list(views[what])
    except KeyError:
        raise KeyError(f"unknown pipeline view {what!r}; expected one of "
                       f"{', '.join(sorted(views))}") from None
