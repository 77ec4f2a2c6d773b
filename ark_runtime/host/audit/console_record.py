"""SEC_03: one console audit record, as the API sent it to the journal, checked before it
enters the root chain.

The API sends these (ark_runtime/api/audit_hook.py); `ark audit ingest` (root) takes only
entries journald stamped as the API's (ingest.py), validates each MESSAGE with `ConsoleRecord`
and turns it into chain-append arguments. What a record can claim is limited all the same: the
actor always becomes `console:<name>` and the action `console.<action>`, and the host is the
ingester's own, so even the API (which anyone who breaks into it speaks for) can never pass
for root, a control-node operator or another host.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

SOURCE = "api"
ACTOR_PREFIX = "console:"
ACTION_PREFIX = "console."
# Keys the ingester adds to every record's args; the API may not set them itself.
RESERVED_ARGS = ("source", "journal", "api_ts", "api_result", "api_seq", "api_stream")
# The API's results; `refused` (rate limited) is a failure in the chain's vocabulary.
_RESULT = {"ok": "ok", "failed": "failed", "partial": "partial", "started": "started",
           "refused": "failed"}

Scalar = str | int | float | bool | None


def _printable(text: str) -> str:
    if any(not ch.isprintable() for ch in text):
        raise ValueError("must not contain control characters")
    return text


def _no_reserved(args: dict[str, Scalar]) -> dict[str, Scalar]:
    taken = sorted(set(args) & set(RESERVED_ARGS))
    if taken:
        raise ValueError(f"{', '.join(taken)} is set by the ingester, not the API")
    return args


class ConsoleRecord(BaseModel):
    """Exactly what audit_hook.record() writes; anything else is refused (extra="forbid")."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ts: Annotated[str, Field(min_length=20, max_length=40)]
    # A failed login's name is whatever was typed: kept, but printable and short.
    who: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_printable)]
    where: Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_printable)]
    source: Literal["api"]
    action: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
    args: Annotated[dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
                         Annotated[Scalar, Field(union_mode="left_to_right")]],
                    Field(max_length=32), AfterValidator(_no_reserved)]
    result: Literal["ok", "failed", "partial", "started", "refused"]
    detail: Annotated[str, Field(max_length=500)]
    duration_ms: Annotated[float, Field(ge=0, le=86_400_000)] | None
    correlation_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@/-]{8,64}$")]
    # Counts from 1 in each API process: the ingester finds gaps and replays with it.
    seq: Annotated[int, Field(ge=1, le=2**53)]

    def checked_ts(self) -> str:
        when = datetime.fromisoformat(self.ts)
        if when.tzinfo is None:
            raise ValueError("ts has no time zone")
        return self.ts

    def append_kwargs(self, journal_id: str, stream: str) -> dict[str, Any]:
        """Arguments for AuditLog.append: marked as the console's, with where it came from
        (the journal entry, the API process and its number for the record)."""
        args: dict[str, Any] = dict(self.args)
        args.update(source=SOURCE, journal=journal_id, api_ts=self.ts, api_seq=self.seq,
                    api_stream=stream)
        if _RESULT[self.result] != self.result:  # keep what the API said (refused)
            args["api_result"] = self.result
        return {
            "action": ACTION_PREFIX + self.action,
            "result": _RESULT[self.result],
            "who": ACTOR_PREFIX + self.who,
            "args": args,
            "duration": None if self.duration_ms is None else self.duration_ms / 1000,
            "correlation_id": self.correlation_id,
            "detail": self.detail or None,
        }


class RecordError(ValueError):
    """A record that cannot be ingested; the message names the field (never its value:
    a mistyped password could sit in a field the API did not expect)."""


def parse_message(raw: bytes | str) -> ConsoleRecord:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RecordError("MESSAGE is not JSON") from None
    if not isinstance(data, dict):
        raise RecordError(f"MESSAGE is a JSON {type(data).__name__}, not an object")
    try:
        rec = ConsoleRecord.model_validate(data)
    except ValidationError as exc:
        raise RecordError("; ".join(_field_error(e) for e in exc.errors()[:5])) from None
    try:
        rec.checked_ts()
    except ValueError as exc:
        msg = str(exc) if "zone" in str(exc) else "is not an ISO-8601 time"
        raise RecordError(f"field ts: {msg.removeprefix('ts ')}") from None
    return rec


def _field_error(err: Any) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ())) or "(record)"
    kind = err.get("type", "")
    why = {"missing": "is missing", "extra_forbidden": "is not a console record field"}.get(kind)
    # pydantic's own message can quote the input; ours names the field and the rule only.
    why = why or err.get("msg", "is invalid").split(", input_value")[0]
    return f"field {loc}: {why.removeprefix('Value error, ')}"
