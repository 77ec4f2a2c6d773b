"""The one envelope every bus message travels in (AGENT_01).

Wire format: a stream entry with a single authoritative field `envelope` (the JSON below) plus
`type` and `correlation_id` copies so `redis-cli XRANGE` stays readable. Readers trust only
`envelope`.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from ark_runtime.bus.codec import (
    CANONICAL_UUID,
    MAX_TTL_S,
    PROTOCOL_VERSION,
    VERSION_WHEN_MISSING,
    WRITE_VERSION,
    decode_canonical,
    payload_for_version,
    version_refusal,
)
from ark_runtime.bus.registry import ENDPOINTS, REGISTRY, payload_model
from ark_runtime.validators import IdError, UtcTime, validate_id

# Ids derived from a parent id are uuid5 in this namespace, so a retried step that emits the
# "same" message produces the same message_id, and duplicates are recognisable downstream.
_NAMESPACE = uuid.UUID("6f0b3b1e-59b5-4f4e-9a57-2b1f0a6c0a11")


class EnvelopeError(ValueError):
    """A stream entry is not a valid envelope; the message says why (it becomes the
    dead-letter reason)."""


_NAMESPACE_BYTES = _NAMESPACE.bytes


def derive_id(parent: str, salt: str) -> str:
    """`str(uuid.uuid5(_NAMESPACE, f"{parent}:{salt}"))`, computed without building UUID
    objects (~1 µs instead of ~5: one per emitted message). The same text, bit for bit
    (tests/unit/test_envelope_codec.py compares the two with hypothesis)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{parent}:{salt}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Strict: a version is a JSON integer; `true` or "2" is bad input, not version 1 or 2.
    v: StrictInt = Field(default=WRITE_VERSION,
                         description="envelope schema version: readers accept N-1 and N "
                         f"(N = {PROTOCOL_VERSION}); read as {VERSION_WHEN_MISSING} when absent")
    message_id: str = Field(description="UUID of this message; the idempotency key")
    correlation_id: str = Field(description="UUID shared by every message of one flow (trace id)")
    causation_id: str | None = Field(
        default=None, description="message_id of the message that caused this one"
    )
    from_agent: str
    to_agent: str
    type: str = Field(description="a registered message type")
    payload: dict[str, Any] = Field(description="validated against the type's payload model")
    timestamp: UtcTime = Field(description="UTC time the message was created")
    ttl: int = Field(default=3600, ge=1, le=MAX_TTL_S, description="seconds until it expires")
    priority: int = Field(default=5, ge=0, le=9, description="0 lowest .. 9 highest")
    _body: BaseModel | None = PrivateAttr(default=None)

    @field_validator("v")
    @classmethod
    def _version(cls, value: int) -> int:
        refusal = version_refusal(value)
        if refusal:
            raise ValueError(refusal)
        return value

    @field_validator("message_id", "correlation_id", "causation_id")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_id(value)
        except IdError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("from_agent", "to_agent")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {value!r}; expected one of {', '.join(ENDPOINTS)}")
        return value

    @field_validator("type")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in REGISTRY:
            raise ValueError(f"unregistered message type {value!r}")
        return value


    @model_validator(mode="after")
    def _expiry_representable(self) -> Envelope:
        # expired() adds the ttl to the timestamp: that sum must exist on the calendar.
        if self.timestamp > datetime.max.replace(tzinfo=UTC) - timedelta(seconds=self.ttl):
            raise ValueError(f"timestamp {self.timestamp.isoformat()} plus ttl {self.ttl}s "
                             "is past the end of the calendar")
        return self

    @model_validator(mode="after")
    def _payload_valid(self) -> Envelope:
        # Normalise the payload through its model so every reader sees the same canonical form.
        model = payload_model(self.type)
        try:
            body = model.model_validate(self.payload)
        except ValidationError as exc:
            raise ValueError(f"payload is not a valid {self.type}: {_brief(exc)}") from None
        object.__setattr__(self, "payload", body.model_dump(mode="json"))
        # Kept for body(): the handler gets the model validated here instead of validating
        # the same payload a second time (payload models are frozen, so sharing is safe).
        self._body = body
        return self

    # -- construction ------------------------------------------------------------------

    @classmethod
    def new(
        cls,
        type: str,
        payload: BaseModel | dict[str, Any],
        *,
        from_agent: str,
        to_agent: str,
        parent: Envelope | None = None,
        message_id: str | None = None,
        ttl: int = 3600,
        priority: int = 5,
    ) -> Envelope:
        """A message; with `parent`, it inherits the correlation id and is caused by it."""
        body = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        # Written in the version the previous release reads (fields it does not know left out).
        body = payload_for_version(type, body, WRITE_VERSION)
        mid = message_id or str(uuid.uuid4())
        fields = dict(
            message_id=mid,
            correlation_id=parent.correlation_id if parent else mid,
            causation_id=parent.message_id if parent else None,
            from_agent=from_agent,
            to_agent=to_agent,
            type=type,
            payload=body,
            timestamp=_now(),
            ttl=ttl,
            priority=priority,
        )
        if _trusted(type, payload, from_agent, to_agent, message_id, ttl, priority):
            # Every value is already known valid (see _trusted): skip re-validating them. The
            # receiving side validates the wire form in full, whoever built it.
            return cls._trusted_instance({"v": WRITE_VERSION, **fields}, payload)
        return cls(**fields)

    def body(self) -> BaseModel:
        """The payload as its registered model instance."""
        if self._body is None:  # e.g. built with model_construct: validate now
            self._body = payload_model(self.type).model_validate(self.payload)
        return self._body

    def expired(self, now: datetime | None = None) -> bool:
        return (now or _now()) > self.timestamp + timedelta(seconds=self.ttl)

    # -- wire --------------------------------------------------------------------------

    def to_fields(self) -> dict[str, str]:
        return {
            "envelope": self.model_dump_json(),
            "type": self.type,
            "correlation_id": self.correlation_id,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Envelope:
        """The entry's envelope, validated; EnvelopeError naming the field otherwise.

        The canonical wire form is checked by msgspec (bus/codec.py, ~4x faster); anything
        else goes through `from_fields_reference`, which accepts or words the error."""
        raw = fields.get("envelope")
        if isinstance(raw, str | bytes):
            fast = decode_canonical(raw)
            if fast is not None:
                return cls._trusted_instance(*fast)
        return cls.from_fields_reference(fields)

    @classmethod
    def _trusted_instance(cls, values: dict[str, Any], body: BaseModel) -> Envelope:
        # What model_construct does, without its per-field default handling (~3 µs): every
        # field is present in `values` and already validated by decode_canonical.
        env = cls.__new__(cls)
        object.__setattr__(env, "__dict__", values)
        object.__setattr__(env, "__pydantic_fields_set__", set(values))
        object.__setattr__(env, "__pydantic_extra__", None)
        object.__setattr__(env, "__pydantic_private__", {"_body": body})
        return env

    @classmethod
    def from_fields_reference(cls, fields: dict[str, str]) -> Envelope:
        """Full pydantic validation of an entry: the reference the fast path must match."""
        raw = fields.get("envelope")
        if raw is None:
            raise EnvelopeError("schema-invalid: entry has no 'envelope' field")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, TypeError) as exc:
            raise EnvelopeError(f"schema-invalid: envelope is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise EnvelopeError("schema-invalid: envelope is not a JSON object")
        # A version this release does not read is refused first, naming it: its other fields
        # may follow a schema this code does not know, so their errors would only mislead.
        data.setdefault("v", VERSION_WHEN_MISSING)
        refusal = version_refusal(data["v"])
        if refusal:
            raise EnvelopeError(refusal)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise EnvelopeError(f"schema-invalid: {_brief(exc)}") from None
        except KeyError as exc:  # unknown type reaching payload_model
            raise EnvelopeError(f"schema-invalid: {exc.args[0]}") from None
        except (ArithmeticError, TypeError, RecursionError) as exc:
            # A validator that let a non-ValueError through (pydantic wraps only ValueError):
            # still a bad entry, never a crash of the reader.
            raise EnvelopeError(f"schema-invalid: {type(exc).__name__}: {exc}") from None


def _trusted(type_: str, payload: object, from_agent: str, to_agent: str,
             message_id: str | None, ttl: int, priority: int) -> bool:
    """True when `Envelope.new` builds an envelope the validators would accept unchanged:
    the payload is an instance of the type's (frozen, hence already validated) model, the
    ids are generated here or come from a validated parent, the rest is in range. Anything
    else (e.g. a caller-chosen message id, a dict payload) goes through full validation."""
    model = REGISTRY.get(type_)
    return (model is not None and isinstance(payload, payload_model(type_))
            and from_agent in ENDPOINTS and to_agent in ENDPOINTS
            and (message_id is None or _canonical_uuid(message_id))
            and builtins.type(ttl) is int and 1 <= ttl <= MAX_TTL_S
            and builtins.type(priority) is int and 0 <= priority <= 9)


def _canonical_uuid(value: str) -> bool:
    # The form validate_id returns unchanged (lower-case 8-4-4-4-12 hex), without parsing.
    return isinstance(value, str) and CANONICAL_UUID.match(value) is not None


def _brief(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "envelope"
        parts.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
