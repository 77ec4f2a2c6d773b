"""The building blocks of the settings declaration: typed values and `var()`.

Each type carries a `Kind` marker so the env schema file can name it (port, host, path, url)
and the constraints pydantic enforces are the ones the schema prints. A sensitive value is
validated as text and then held as a `SecretStr`, so no repr, log line or error shows it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, StringConstraints

from ark_runtime import pipeline

# Values longer than this are refused for every variable: an env value is a setting, not data.
MAX_VALUE_LENGTH = 4096

_HOST_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


@dataclass(frozen=True)
class Kind:
    """The env schema's name for a type whose rule is code, not a plain constraint."""

    name: str
    schemes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Const:
    """The only value a variable may take (the schema prints it as `const`)."""

    value: Any


def _as_secret(value: str) -> SecretStr:
    return SecretStr(value)


# Marks a value as sensitive (and wraps it): the schema says `sensitive: true`.
SECRET = AfterValidator(_as_secret)


def _host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOST_RE.fullmatch(value):
        raise ValueError("is not a host name or IP address")
    return value


def _abs_path(value: str) -> Path:
    if not value.startswith("/") or "\x00" in value or ".." in value.split("/"):
        raise ValueError("is not an absolute path without '..'")
    return Path(value)


def _redis_url(value: str) -> str:
    # Our own messages: a URL may embed the password, so nothing of it is ever repeated.
    if "://" not in value:
        raise ValueError("is not a valid URL (redis://[:password@]host[:port][/db])")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("URL scheme must be one of redis, rediss")
    if not parts.hostname or any(c.isspace() for c in value):
        raise ValueError("is not a valid URL (redis://[:password@]host[:port][/db])")
    db = parts.path.lstrip("/")
    if db and not (db.isdigit() and int(db) <= 15):
        raise ValueError("URL database must be 0..15")
    return value


def _must_be_true(value: bool) -> bool:
    if value is not True:
        raise ValueError("must be true")
    return value


TrueOnly = Annotated[bool, AfterValidator(_must_be_true), Const(True)]
Port = Annotated[int, Field(ge=1, le=65535), Kind("port")]
Host = Annotated[str, StringConstraints(max_length=253), AfterValidator(_host), Kind("host")]
AbsPath = Annotated[
    str, StringConstraints(max_length=MAX_VALUE_LENGTH), AfterValidator(_abs_path), Kind("path")
]
RedisUrl = Annotated[
    str, StringConstraints(max_length=2048), AfterValidator(_redis_url),
    Kind("url", ("redis", "rediss")), SECRET,
]


def secret(*, min_length: int = 1, pattern: str | None = None) -> Any:
    """A sensitive string with the given rules (held as SecretStr once valid)."""
    return Annotated[
        str,
        StringConstraints(min_length=min_length, max_length=MAX_VALUE_LENGTH, pattern=pattern),
        SECRET,
    ]


def sentinel_addresses(value: str) -> list[tuple[str, int]]:
    """Issue #20: "host:port,host:port" (an IPv6 address in brackets) as (host, port) pairs;
    empty: no Sentinel. ValueError names the item that is not an address."""
    pairs = []
    for n, item in enumerate(value.split(",") if value else [], 1):
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"has no host:port (port 1-65535) at item {n}")
        if host.startswith("["):
            host = host.removeprefix("[").removesuffix("]")
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"has no IPv6 address between brackets at item {n}") from None
        else:
            _host(host)
        pairs.append((host, int(port)))
    return pairs


def _sentinels(value: str) -> str:
    sentinel_addresses(value)
    return value


SentinelList = Annotated[str, StringConstraints(max_length=1000), AfterValidator(_sentinels)]


def text(*, pattern: str | None = None, max_length: int = MAX_VALUE_LENGTH) -> Any:
    return Annotated[str, StringConstraints(max_length=max_length, pattern=pattern)]


ALL_AGENTS = pipeline.NAMES
CONSUMERS = pipeline.CONSUMERS


def var(
    env: str,
    default: Any,
    description: str,
    *,
    read_by: Sequence[str],
    domain: str = "infrastructure",
    required: bool = False,
    required_in: Sequence[str] = (),
    required_if: Mapping[str, str] | None = None,
    default_text: str | None = None,
    **constraints: Any,
) -> Any:
    """Declare one environment variable. `read_by` names the components whose code reads it;
    `default_text` describes a computed default (None in the model) for operators."""
    extra: dict[str, Any] = {"domain": domain, "read_by": list(read_by), "required": required}
    if required_in:
        extra["required_in"] = list(required_in)
    if required_if:
        extra["required_if"] = dict(required_if)
    if default_text:
        extra["default_text"] = default_text
    return Field(default, alias=env, description=description, json_schema_extra=extra,
                 **constraints)
