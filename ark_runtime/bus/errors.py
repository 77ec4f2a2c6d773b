"""The error bus (AGENT_02): severities, and the pause a critical error puts on producers.

Errors are `error.raised` envelopes on `ark:stream:errors`. A `critical` one also sets a pause:
hash `ark:pause` maps the failing agent (the origin) to the agents upstream of it, and those
agents stop emitting (Kyle stops reading the feed, Joey/Kenny stop reading their inboxes, so
work waits in the streams instead of being lost) until an operator clears it with
`ark errors clear`. Setting and clearing are logged, published on the error stream
(control.pause / control.resume) and shown by `ark errors status`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis

from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.registry import PIPELINE, ControlPause, ControlResume, ErrorRaised
from ark_runtime.bus.streams import ERRORS_STREAM

PAUSE_KEY = "ark:pause"
log = logging.getLogger("ark.errors")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}


def upstream_of(origin: str) -> list[str]:
    """The agents a failure at `origin` must halt: everything before it in the pipeline.

    The source (Kyle) or a non-agent origin (operator) halts the source itself."""
    if origin in PIPELINE and PIPELINE.index(origin) > 0:
        return list(PIPELINE[: PIPELINE.index(origin)])
    return [PIPELINE[0]]


class ErrorBus:
    def __init__(self, client: redis.Redis, agent: str, maxlen: int = 100_000) -> None:
        self.r = client
        self.agent = agent  # an agent name or "operator"
        self.maxlen = maxlen

    def _emit(self, env: Envelope) -> None:
        self.r.xadd(ERRORS_STREAM, env.to_fields(), maxlen=self.maxlen, approximate=True)

    def publish(self, severity: str, error: str, message: str, *,
                related: Envelope | None = None) -> Envelope:
        """Report an error; `critical` also pauses the agents upstream of this one."""
        origin = self.agent if self.agent in PIPELINE else "operator"
        body = ErrorRaised(agent=origin, severity=severity, error=error[:200],  # type: ignore[arg-type]
                           message=message[:2000],
                           related_message_id=related.message_id if related else None)
        env = Envelope.new("error.raised", body, from_agent=origin, to_agent="bus",
                           parent=related, priority=9 if severity == "critical" else 5)
        self._emit(env)
        log.log(_LEVELS[severity], "error published: %s: %s", error, message,
                extra={"event": "error", "severity": severity, "error_id": env.message_id})
        if severity == "critical":
            self.pause(origin, f"{error}: {message}", by=origin, parent=env)
        return env

    def pause(self, origin: str, reason: str, *, by: str,
              parent: Envelope | None = None) -> list[str]:
        agents = upstream_of(origin)
        record = {"agents": agents, "reason": reason[:2000], "by": by,
                  "since": datetime.now(UTC).isoformat(),
                  "error_id": parent.message_id if parent else None}
        self.r.hset(PAUSE_KEY, origin, json.dumps(record))
        body = ControlPause(origin=origin, agents=agents, reason=reason[:2000], by=by)
        sender = by if by in PIPELINE else "operator"
        self._emit(Envelope.new("control.pause", body, from_agent=sender, to_agent="bus",
                                parent=parent, priority=9))
        log.critical("pipeline paused: %s halted by %s (%s)", ", ".join(agents), origin, reason,
                     extra={"event": "pause", "origin": origin, "paused": agents})
        return agents

    def clear(self, origins: list[str] | None = None, *, by: str,
              reason: str = "") -> list[str]:
        """Clear the pauses set by `origins` (all when None). Returns the origins cleared."""
        current = self.r.hkeys(PAUSE_KEY)
        targets = [o for o in current if origins is None or o in origins]
        if not targets:
            return []
        self.r.hdel(PAUSE_KEY, *targets)
        self._emit(Envelope.new("control.resume", ControlResume(origins=targets, by=by,
                                                                reason=reason[:2000]),
                                from_agent="operator", to_agent="bus", priority=9))
        log.warning("pipeline pause cleared for %s by %s", ", ".join(targets), by,
                    extra={"event": "resume", "origins": targets, "by": by})
        return targets


def pauses(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """origin -> {agents, reason, by, since, error_id}."""
    out = {}
    for origin, raw in client.hgetall(PAUSE_KEY).items():
        try:
            out[origin] = json.loads(raw)
        except ValueError:
            # A corrupt record still pauses: fail closed, and say so.
            out[origin] = {"agents": list(PIPELINE), "reason": f"unreadable pause record {raw!r}"}
    return out


def held_by(client: redis.Redis, agent: str) -> list[str]:
    """The origins whose pause currently holds `agent` (empty: free to emit)."""
    return [o for o, rec in pauses(client).items() if agent in rec.get("agents", [])]


def recent(client: redis.Redis, count: int = 20) -> list[Envelope]:
    out = []
    for _eid, fields in client.xrevrange(ERRORS_STREAM, count=count):
        try:
            out.append(Envelope.from_fields(fields))
        except ValueError:
            continue
    return list(reversed(out))
