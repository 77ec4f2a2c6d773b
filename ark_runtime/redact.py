"""What counts as a secret, and how it is hidden: one module for every redactor (SEC_01/SEC_03).

One mask (`MASK`) and one list of what is secret, derived from the settings declaration
(`ark_runtime/settings/model.py`: a field is sensitive when its type is a secret):

* a variable the declaration marks sensitive (`SENSITIVE_VARIABLES`), and under an unknown
  name anything named like one: a name holding one of `SECRET_WORDS` (the last word of each
  sensitive variable, plus the web's own secrets: cookies, CSRF tokens, sessions);
* every value such a name carries, wherever it then appears in text.

Users: the audit chain and the API's audit spool (`redact`), the control node's reports and
console (`Redactor` with `ark_ops/redact.py` finding the values), config history (Redis's
password directives, `mask_redis_secrets`) and the DR bundle's env files (`redact_env_text`).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ark_runtime.settings import VARIABLES

MASK = "***"
MAX_TEXT = 2000

SENSITIVE_VARIABLES: frozenset[str] = frozenset(v.name for v in VARIABLES.values() if v.sensitive)
# Secrets that are not environment variables: HTTP and session material, key files.
_WEB_WORDS = ("pass", "credential", "auth", "cookie", "csrf", "session", "private")
# The last word of each sensitive, non-URL variable (ARK_API_SECRET -> secret, ..._KEY -> key):
# a URL is sensitive for the password inside it, not for its name.
SECRET_WORDS: tuple[str, ...] = tuple(sorted(
    {v.name.rsplit("_", 1)[-1].lower() for v in VARIABLES.values()
     if v.sensitive and v.kind != "url"} | set(_WEB_WORDS)))
_SECRET_NAME = re.compile("|".join(SECRET_WORDS), re.IGNORECASE)
_ANY_SECRET = "|".join([*sorted(SENSITIVE_VARIABLES, key=len, reverse=True), *SECRET_WORDS])
# `name=value` / `name: value` inside free text, where the name is secret.
_SECRET_ASSIGN = re.compile(
    rf"(?P<k>[A-Za-z0-9_.-]*(?:{_ANY_SECRET})[A-Za-z0-9_.-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<v>\S+)", re.IGNORECASE)
# Redis directives whose argument is a secret (requirepass, masterauth, an ACL user's >pass).
_REDIS_SECRET = re.compile(r"^(\s*(?:requirepass|masterauth|user\s+\S+.*?>)\s*)(\S+)(.*)$")
# Values shorter than this are not searched for in text: they would mask ordinary words.
MIN_VALUE = 6


def is_secret_name(name: str) -> bool:
    """A declared sensitive variable, or a name that says it holds a secret."""
    return name.upper() in SENSITIVE_VARIABLES or bool(_SECRET_NAME.search(name))


def is_secret_variable(name: str, declared: Iterable[str], *, unknown_is_secret: bool) -> bool:
    """For env files: sensitive when declared so; an undeclared name is secret when
    `unknown_is_secret` (a DR bundle: not known safe = secret), else when named like one."""
    if name in SENSITIVE_VARIABLES:
        return True
    if name in set(declared):
        return False
    return unknown_is_secret or is_secret_name(name)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of secret variables in an environment, longest first (never copied anywhere)."""
    return sorted({v for k, v in env.items() if is_secret_name(k) and len(v) >= MIN_VALUE},
                  key=len, reverse=True)


def forms(secret: str) -> set[str]:
    """The secret as written raw, XML-escaped, JSON-escaped and Python-repr'd: a report
    may carry any of these."""
    return {secret, html.escape(secret), json.dumps(secret)[1:-1], repr(secret)[1:-1]}


class Redactor:
    """Masks a fixed set of secret values in text. Overlapping and nested secrets are masked
    as the union of everything any of them covers, so no fragment of one survives."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            # A value made only of mask characters cannot be hidden by masking (and
            # would make every mask look like a leak): such a value is not kept.
            if secret and secret.strip(MASK[0]):
                self.secrets |= {f for f in forms(secret) if f.strip(MASK[0])}

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def _mask_once(self, text: str) -> str:
        covered: list[tuple[int, int]] = []
        for secret in self.secrets:
            start = text.find(secret)
            while start != -1:
                covered.append((start, start + len(secret)))
                start = text.find(secret, start + 1)  # overlapping occurrences too
        if not covered:
            return text
        covered.sort()
        out, pos = [], 0
        merged_start, merged_end = covered[0]
        for start, end in covered[1:] + [(len(text) + 1, len(text) + 1)]:
            if start <= merged_end:
                merged_end = max(merged_end, end)
                continue
            out += [text[pos:merged_start], MASK]
            pos = merged_end
            merged_start, merged_end = start, end
        out.append(text[pos:])
        return "".join(out)

    def __call__(self, text: str) -> str:
        # A mask next to leftover characters can spell another secret (secret "**a"
        # after "xa" was masked in "xaa"); repeat until nothing is found. Each pass
        # replaces at least one non-mask character, so this ends.
        if not self.secrets or not text:
            return text
        while True:
            masked = self._mask_once(text)
            if masked == text:
                return text
            text = masked


def redact(value: Any, env: Mapping[str, str] | None = None, _key: str = "", *,
           max_text: int | None = MAX_TEXT) -> Any:
    """The value with secrets masked: values under secret names (at any depth of mappings,
    lists and tuples), `name=value` pairs with a secret name inside strings, and any
    occurrence of a secret variable's value from `env`. Strings are cut to `max_text`."""
    if _key and is_secret_name(_key):
        return MASK
    if isinstance(value, Mapping):
        return {str(k): redact(v, env, str(k), max_text=max_text) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, env, max_text=max_text) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    text = _SECRET_ASSIGN.sub(lambda m: f"{m['k']}{m['sep']}{MASK}", str(value))
    if env:
        text = Redactor(secret_values(env))(text)
    return text if max_text is None else text[:max_text]


def mask_redis_secrets(text: str) -> str:
    """A Redis config with the password directives' values masked."""
    return "".join(_REDIS_SECRET.sub(lambda m: f"{m[1]}{MASK}{m[3]}", ln)
                   for ln in text.splitlines(keepends=True))


# A password directive whose value was masked (config rollback refills it from the live file).
MASKED_REDIS_DIRECTIVE = re.compile(rf"^\s*(requirepass|masterauth)\s+{re.escape(MASK)}",
                                    re.MULTILINE)


def has_mask(data: bytes) -> bool:
    return MASK.encode() in data
