"""The fast envelope decoder: msgspec for the wire form our own agents write (issue #12).

`Envelope.from_fields` used to validate every entry with pydantic (~10 µs of envelope checks
per message on top of the payload's own model). Almost every entry on the bus is in the one
canonical form `Envelope.to_fields` writes: exact types, lower-case UUIDs, an RFC 3339
timestamp with an offset. `decode_canonical` checks exactly that form with a msgspec Struct
(types, ranges, no unknown fields) plus the envelope's own rules (version, ids, endpoints,
registered type, representable expiry), then validates the payload with its pydantic model
as before.

Anything it does not accept in full (a wrong type, an upper-case UUID, a numeric string, an
invalid payload ...) returns None, and the caller runs the reference pydantic validation, which
either accepts it (lax input it normalises) or produces the error message naming the field.
So the fast path can only ever accept what the reference accepts, with the same result, and
every error message is the reference's (tests/unit/test_envelope_codec.py checks both with
hypothesis).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from ark_runtime.bus.registry import ENDPOINTS, REGISTRY, payload_model

# Envelope schema versions (docs/AGENT_PROTOCOL.md, "Schema versions and upgrades"). A release
# reads N and N-1, so agents of two adjacent releases share one bus during a rolling upgrade,
# and writes the oldest version the previous release reads: a release that introduces N still
# writes N-1 (the previous release reads only up to N-1); the release after it writes N.
# Version 2 adds payload fields (ADDED_IN_VERSION) and the executor's types; this release still
# writes 1 because the release before it reads only 1.
PROTOCOL_VERSION = 2  # N: the newest schema version this release reads
READ_VERSIONS = (PROTOCOL_VERSION - 1, PROTOCOL_VERSION)  # N-1 and N
WRITE_VERSION = 1  # what this release writes
# An envelope without `v` predates the field (version 1): read as 1, so it is accepted while
# 1 is within N-1..N and refused, naming that reading, once it is not.
VERSION_WHEN_MISSING = 1
# Payload fields a version added to a message type the previous release already reads (its
# models forbid unknown fields): a writer of an older version leaves them out, and a reader
# of that older form gets the field's default. Dotted paths reach into nested payloads.
ADDED_IN_VERSION: dict[str, dict[str, int]] = {
    "trade.plan": {"hold_bars": 2},  # issue 18: the executor's time limit
    "hrm.decision": {"plan.hold_bars": 2},  # the verdict carries the plan
}
MAX_TTL_S = 7 * 24 * 3600

# Canonical lower-case UUID text, the form validate_id returns unchanged.
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_UUID = CANONICAL_UUID
# What to_fields writes (pydantic's JSON datetime): date, time, 0-6 fraction digits, an offset.
# Other spellings pydantic also accepts (a space separator, unix numbers ...) take the
# reference path.
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)\Z")
_LATEST = datetime.max.replace(tzinfo=UTC)
_ENDPOINTS = frozenset(ENDPOINTS)


class _Wire(msgspec.Struct, forbid_unknown_fields=True):
    """The envelope's JSON shape; msgspec's strict types refuse bool-as-int, "5"-as-int ..."""

    message_id: str
    correlation_id: str
    from_agent: str
    to_agent: str
    type: str
    payload: dict[str, Any]
    timestamp: str
    v: int = VERSION_WHEN_MISSING
    causation_id: str | None = None
    ttl: Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_S)] = 3600
    priority: Annotated[int, msgspec.Meta(ge=0, le=9)] = 5


_DECODER = msgspec.json.Decoder(_Wire)


def _timestamp(text: str) -> datetime | None:
    if not _TIME.match(text):
        return None
    try:
        value = datetime.fromisoformat(text)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _ids_canonical(wire: _Wire) -> bool:
    return bool(_UUID.match(wire.message_id) and _UUID.match(wire.correlation_id)
                and (wire.causation_id is None or _UUID.match(wire.causation_id)))


def decode_canonical(raw: str | bytes) -> tuple[dict[str, Any], Any] | None:
    """(the envelope's validated field values, its payload model instance) when `raw` is a
    canonical envelope the reference validation accepts; None for anything else."""
    try:
        wire = _DECODER.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    if (wire.v not in READ_VERSIONS or type(wire.v) is not int or not _ids_canonical(wire)
            or wire.from_agent not in _ENDPOINTS or wire.to_agent not in _ENDPOINTS
            or wire.type not in REGISTRY):
        return None
    ts = _timestamp(wire.timestamp)
    if ts is None or ts > _LATEST - timedelta(seconds=wire.ttl):
        return None
    try:
        body = payload_model(wire.type).model_validate(wire.payload)
    except (ValueError, TypeError, ArithmeticError, RecursionError):
        return None  # the reference path words the error
    fields = {"v": wire.v, "message_id": wire.message_id,
              "correlation_id": wire.correlation_id, "causation_id": wire.causation_id,
              "from_agent": wire.from_agent, "to_agent": wire.to_agent, "type": wire.type,
              "payload": body.model_dump(mode="json"), "timestamp": ts, "ttl": wire.ttl,
              "priority": wire.priority}
    return fields, body


def version_refusal(version: object) -> str | None:
    """The dead-letter reason for an envelope whose schema version this release does not
    read, naming that version; None when it reads it (or `version` is not a whole number:
    then the field's own validation words the error)."""
    if type(version) is not int or version in READ_VERSIONS:
        return None
    window = f"{READ_VERSIONS[0]} and {READ_VERSIONS[1]}"
    if version > PROTOCOL_VERSION:
        return (f"unsupported-version: envelope schema version {version} is newer than this "
                f"agent reads ({window}): upgrade this agent's host")
    return (f"unsupported-version: envelope schema version {version} is older than this agent "
            f"reads ({window}): its writer is more than one release behind")


def payload_for_version(type_: str, body: dict[str, Any], version: int) -> dict[str, Any]:
    """`body` as a writer of `version` says it: without the fields later versions added. A
    value other than the field's default cannot be said that way: ValueError naming it."""
    later = [path for path, added in ADDED_IN_VERSION.get(type_, {}).items() if added > version]
    if not later:
        return body
    out = dict(body)
    for path in later:
        *parents, leaf = path.split(".")
        holder, model = out, payload_model(type_)
        for name in parents:
            model = model.model_fields[name].annotation  # type: ignore[assignment]
            if not isinstance(holder.get(name), dict):
                break
            holder[name] = holder = dict(holder[name])
        else:
            if leaf in holder:
                default = model.model_fields[leaf].get_default(call_default_factory=True)
                if holder[leaf] != default:
                    raise ValueError(f"payload.{path}={holder[leaf]!r} cannot be written as "
                                     f"envelope version {version} (the field came with version "
                                     f"{ADDED_IN_VERSION[type_][path]}; only its default "
                                     f"{default!r} can be left out)")
                del holder[leaf]
    return out
