"""SEC_02: allow-list validators for every input boundary (API, CLI, feed, bus).

Each validator accepts only what matches a known-good shape and returns the
canonical value; anything else raises a `ValidationError` subclass naming what
was wrong. Callers can therefore catch one exception type at a boundary and
never see a stray TypeError/UnicodeError from hostile input.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

from ark_runtime.pipeline import NAMES

__all__ = [
    "AGENT_NAMES",
    "AgentNameError",
    "TimestampError",
    "IdError",
    "PathError",
    "SymbolError",
    "UrlError",
    "ValidationError",
    "validate_agent_name",
    "validate_id",
    "validate_path",
    "validate_symbol",
    "validate_url",
    "validate_utc",
]

# The agent names (ark_runtime/pipeline.py); the bus and the CLI accept nothing else.
AGENT_NAMES: tuple[str, ...] = NAMES

# Ticker root of 1-10 upper-case letters/digits starting with a letter, optionally one
# class/quote suffix after "." or "-" (BRK.B, BTC-USD, ETH-USDT). No lower case: a
# symbol is an identifier, not free text, so case-folding would hide injected input.
_SYMBOL_RE = re.compile(r"[A-Z][A-Z0-9]{0,9}(?:[.\-][A-Z0-9]{1,10})?")
SYMBOL_MAX_LEN = 21

URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "redis", "rediss"})
URL_MAX_LEN = 2048


class ValidationError(ValueError):
    """Base class: the input is not on the allow-list. The message says why."""


class SymbolError(ValidationError):
    pass


class AgentNameError(ValidationError):
    pass


class PathError(ValidationError):
    pass


class UrlError(ValidationError):
    pass


class IdError(ValidationError):
    pass


class TimestampError(ValidationError):
    pass


def _short(value: object) -> str:
    # Echo at most a prefix of hostile input so error messages stay readable.
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_symbol(value: object) -> str:
    if not isinstance(value, str):
        raise SymbolError(f"symbol must be a string, got {type(value).__name__}")
    if not value:
        raise SymbolError("symbol is empty")
    if len(value) > SYMBOL_MAX_LEN:
        raise SymbolError(f"symbol {_short(value)} is longer than {SYMBOL_MAX_LEN} characters")
    if not _SYMBOL_RE.fullmatch(value):
        raise SymbolError(
            f"symbol {_short(value)} is not allowed: use upper-case letters/digits with at "
            "most one '.' or '-' suffix (e.g. AAPL, BRK.B, BTC-USD)"
        )
    return value


def validate_utc(value: datetime) -> datetime:
    """An aware datetime, returned in UTC. A time near datetime.min/max with an offset
    cannot be moved to UTC: `astimezone` raises OverflowError, which pydantic would not
    wrap, so it becomes a ValidationError here."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise TimestampError("timestamp must carry a timezone (UTC expected)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise TimestampError(
            f"timestamp {value.isoformat()} is out of range once converted to UTC"
        ) from None


def validate_agent_name(value: object) -> str:
    if not isinstance(value, str) or value not in AGENT_NAMES:
        raise AgentNameError(
            f"unknown agent {_short(value)}: expected one of {', '.join(AGENT_NAMES)}"
        )
    return value


def validate_id(value: object, what: str = "id") -> str:
    """A message or correlation id: a UUID, returned in canonical lower-case form."""
    if not isinstance(value, str):
        raise IdError(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > 64:
        raise IdError(f"{what} {_short(value)} is too long to be a UUID")
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise IdError(f"{what} {_short(value)} is not a UUID") from None
    # uuid.UUID also accepts braces/urn forms; only the canonical 36-char form is allowed.
    if str(parsed) != value.lower():
        raise IdError(f"{what} {_short(value)} is not in canonical UUID form")
    return str(parsed)


def validate_path(value: object, base_dir: str | os.PathLike[str]) -> Path:
    """Resolve `value` (relative to base_dir, or absolute) and require it to stay inside
    base_dir after symlinks are followed. Returns the canonical absolute path."""
    if not isinstance(value, (str, os.PathLike)):
        raise PathError(f"path must be a string, got {type(value).__name__}")
    raw = os.fspath(value)
    if isinstance(raw, bytes):
        raise PathError("path must be text, not bytes")
    if not raw:
        raise PathError("path is empty")
    if "\x00" in raw:
        raise PathError("path contains a NUL byte")
    if ".." in Path(raw).parts:
        raise PathError(f"path {_short(raw)} contains '..'")
    try:
        base = Path(base_dir).resolve()
        # resolve() follows symlinks, so a link pointing outside base is caught below.
        resolved = (base / raw).resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise PathError(f"path {_short(raw)} cannot be resolved: {exc}") from None
    if resolved != base and base not in resolved.parents:
        raise PathError(f"path {_short(raw)} resolves outside {base}")
    return resolved


def validate_url(value: object, *, allow_credentials: bool = False) -> str:
    """http(s)/redis(s) URLs with a host. Credentials in http(s) URLs leak into logs and
    browser history, so they need an explicit opt-in; redis URLs carry the password
    by design (the env file holding them is 0600)."""
    if not isinstance(value, str):
        raise UrlError(f"URL must be a string, got {type(value).__name__}")
    if not value or len(value) > URL_MAX_LEN:
        raise UrlError(f"URL length must be 1..{URL_MAX_LEN}")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise UrlError("URL contains whitespace or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a non-numeric/out-of-range port
        host = parts.hostname
    except ValueError as exc:
        raise UrlError(f"URL is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise UrlError(
            f"URL scheme {scheme or '(none)'!r} is not allowed: use one of "
            f"{', '.join(sorted(URL_SCHEMES))}"
        )
    if not host:
        raise UrlError("URL has no host")
    if port == 0:
        raise UrlError("URL port 0 is not allowed")
    has_credentials = parts.username is not None or parts.password is not None
    if has_credentials and scheme in {"http", "https"} and not allow_credentials:
        # Do not echo the URL: it contains the credentials.
        raise UrlError(f"{scheme} URL must not embed credentials")
    return value


# Field types for the pipeline's models: one declaration of "a symbol" and "a UTC time"
# instead of a field_validator per model.
Symbol = Annotated[str, AfterValidator(validate_symbol)]
UtcTime = Annotated[datetime, AfterValidator(validate_utc)]
