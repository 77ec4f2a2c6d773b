"""The console's authenticated read mix for `invoke load --generator wrk` (issue #23 §5).

The routes come from the API's own OpenAPI document: `MIX` names an operation by method and
path *as the document spells it* and gives it a weight and the query it sends; `requests()`
refuses a mix whose route or query parameter the document no longer has (or whose value its
schema refuses), and `unweighted()` lists signed-in GET routes the mix does not cover, so a
new read route cannot silently stay out of the load test.

Weights are the requests one open console page makes per minute
(ark_runtime/api/static/console.js): the log viewer follows /api/logs every second with the
cursor it got back (60), the status panel polls every 3 s and again after each admin action
(20); about once a minute an operator changes the log filter (a fresh tail, and a filtered
one), clicks a correlation id (a trace), reloads the page, or, scripted, reads /api/me for the
session's role and CSRF token before an admin action. The admin actions themselves are POSTs
that change the fleet (panic, pause, unit restarts): not load-test material; their reads are.

The file handed to the wrk script (mix.lua) holds the session: it is written 0600 in a 0700
directory and passed by its path in ARK_WRK_MIX, never on a command line.
"""

from __future__ import annotations

import os
import re
import stat
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from ark_ops.errors import OpsError

LUA_SCRIPT = Path(__file__).with_name("mix.lua")


@dataclass(frozen=True)
class Entry:
    name: str
    method: str
    path: str  # as in the OpenAPI document, with {placeholders}
    weight: int
    query: tuple[tuple[str, str], ...] = ()
    path_params: tuple[tuple[str, str], ...] = ()  # placeholder -> value (see fill())


# "@cursor" / "@trace_id" are filled from the session's own first answers (prepare()).
MIX: tuple[Entry, ...] = (
    Entry("logs follow", "GET", "/api/logs", 60, (("cursor", "@cursor"),)),
    Entry("status", "GET", "/api/status", 20),
    Entry("logs tail", "GET", "/api/logs", 1, (("lines", "100"),)),
    Entry("logs filtered", "GET", "/api/logs", 1,
          (("agent", "hrm"), ("agent", "kenny"), ("level", "warning"))),
    Entry("trace", "GET", "/api/trace/{ident}", 1, path_params=(("ident", "@trace_id"),)),
    Entry("me (admin reads)", "GET", "/api/me", 1),
    Entry("console page", "GET", "/", 1),
)

# Signed-in GET routes deliberately outside the mix (none today): {path: why}.
EXCLUDED: dict[str, str] = {}
PUBLIC = {"/health", "/metrics", "/login", "/openapi.json"}


@dataclass
class Request:
    name: str
    weight: int
    path: str  # concrete, with its query string
    route: str = ""  # the document's path it was made from


@dataclass
class Session:
    # Secrets: kept out of repr (a traceback or an assertion message never shows them).
    cookie: str = field(repr=False)  # "ark_session=..."
    csrf: str = field(repr=False)
    cursor: str = ""
    trace_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def _operation(doc: dict, entry: Entry) -> dict:
    op = doc.get("paths", {}).get(entry.path, {}).get(entry.method.lower())
    if op is None:
        raise OpsError(f"load mix: {entry.method} {entry.path} ({entry.name}) is not in the "
                       "API's OpenAPI document")
    return op


def _schema_ok(schema: dict, value: str) -> bool:
    """The few JSON-schema checks the API's parameters use: anyOf, array items, enum,
    pattern, integer bounds, maxLength."""
    if "anyOf" in schema:
        return any(_schema_ok(s, value) for s in schema["anyOf"] if s.get("type") != "null")
    if schema.get("type") == "array":
        return _schema_ok(schema.get("items", {}), value)
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "const" in schema and value != schema["const"]:
        return False
    if schema.get("type") == "integer":
        if not re.fullmatch(r"-?[0-9]+", value):
            return False
        n = int(value)
        return not ("minimum" in schema and n < schema["minimum"]
                    or "maximum" in schema and n > schema["maximum"])
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return False
    return "pattern" not in schema or re.search(schema["pattern"], value) is not None


def check(doc: dict, mix: Iterable[Entry] = MIX) -> None:
    """OpsError naming the first mix route, parameter or value the document does not have."""
    for entry in mix:
        op = _operation(doc, entry)
        params = {(p["in"], p["name"]): p for p in op.get("parameters", [])}
        for name, value in entry.query:
            p = params.get(("query", name))
            if p is None:
                raise OpsError(f"load mix: {entry.path} has no query parameter {name!r} "
                               f"({entry.name})")
            if not value.startswith("@") and not _schema_ok(p.get("schema", {}), value):
                raise OpsError(f"load mix: {entry.path}?{name}={value} is refused by the "
                               f"document's schema ({entry.name})")
        wanted = set(re.findall(r"{([^}]+)}", entry.path))
        given = {k for k, _ in entry.path_params}
        if wanted != given:
            raise OpsError(f"load mix: {entry.path} needs path parameters {sorted(wanted)}, "
                           f"the mix gives {sorted(given)} ({entry.name})")


def unweighted(doc: dict, mix: Iterable[Entry] = MIX) -> list[str]:
    """GET routes of the document that need a signed-in operator and are neither in the mix
    nor in EXCLUDED."""
    covered = {e.path for e in mix if e.method == "GET"}
    return sorted(path for path, ops in doc.get("paths", {}).items()
                  if "get" in ops and path not in PUBLIC | covered | set(EXCLUDED)
                  and not path.startswith("/static"))


def _value(value: str, session: Session) -> str:
    return {"@cursor": session.cursor, "@trace_id": session.trace_id}.get(value, value)


def requests(doc: dict, session: Session, mix: Iterable[Entry] = MIX) -> list[Request]:
    mix = list(mix)
    check(doc, mix)
    out = []
    for entry in mix:
        path = entry.path
        for name, value in entry.path_params:
            path = path.replace("{" + name + "}", _value(value, session))
        query = [(k, _value(v, session)) for k, v in entry.query]
        query = [(k, v) for k, v in query if v != ""]  # no cursor yet: a plain tail
        out.append(Request(entry.name, entry.weight,
                           path + ("?" + urlencode(query) if query else ""), entry.path))
    return out


# --- the file mix.lua reads --------------------------------------------------------------

_SAFE = re.compile(r"^[\x21-\x7e]+$")  # one token: printable, no space


def render_mix_file(session: Session, reqs: list[Request]) -> str:
    """Line-oriented so Lua reads it without a JSON library: `cookie V`, `csrf V`, then
    `request WEIGHT PATH NAME...` (the name may hold spaces; it is the last field)."""
    for label, value in (("cookie", session.cookie), ("csrf", session.csrf)):
        if not _SAFE.match(value):
            raise OpsError(f"load mix: the session's {label} is not one printable token")
    lines = [f"cookie {session.cookie}", f"csrf {session.csrf}"]
    for r in reqs:
        if r.weight < 1 or not _SAFE.match(r.path) or "\n" in r.name:
            raise OpsError(f"load mix: {r.name!r} cannot be written ({r.weight}, {r.path!r})")
        lines.append(f"request {r.weight} {r.path} {r.name}")
    return "\n".join(lines) + "\n"


def parse_mix_file(text: str) -> tuple[dict[str, str], list[Request]]:
    """The inverse of render_mix_file (what mix.lua does, for the tests)."""
    head: dict[str, str] = {}
    reqs = []
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind in ("cookie", "csrf"):
            head[kind] = rest
        elif kind == "request":
            weight, path, name = rest.split(" ", 2)
            reqs.append(Request(name, int(weight), path))
    return head, reqs


def write_private(directory: Path, name: str, text: str) -> Path:
    """`text` in directory/name, created 0600 (never world- or group-readable, not even
    between create and chmod)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if stat.S_IMODE(path.stat().st_mode) != 0o600:
        os.chmod(path, 0o600)
    return path
