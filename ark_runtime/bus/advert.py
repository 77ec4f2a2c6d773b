"""What each consuming agent reads, advertised on the bus (docs/AGENT_PROTOCOL.md, "Schema
versions and upgrades").

A release registers a new message type its previous release does not: that release's
reader dead-letters it (an unregistered type). During a rolling upgrade the writer may be
upgraded first, so a writer sends a type in GATED only while every reader of it advertises
it. Each consuming agent advertises, under a key it owns, the types its inbox carries (the
pipeline declaration) and the envelope versions it reads (the codec), and refreshes it with
a TTL: a reader rolled back to a release that does not advertise stops being written to once
the key expires, and a Redis that lost its data gets the key again within one refresh.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import redis

from ark_runtime.bus.codec import READ_VERSIONS, WRITE_VERSION
from ark_runtime.bus.keys import reads_key
from ark_runtime.pipeline import BY_NAME, consumers

# Types a writer sends only to readers that advertise them: the ones the previous release
# does not register (tests/integration/test_wire_compat_previous_release.py checks the set).
GATED = frozenset({"position.marked"})
# The reader re-sets its key this often, with this TTL: a lapse needs several missed
# refreshes (a stopped or rolled-back reader), not one slow step.
REFRESH_S = 15.0
TTL_S = 60


def advertisement(agent: str) -> str:
    """The JSON an agent of this release advertises: each type it reads, with the envelope
    versions it reads it in."""
    return json.dumps({"agent": agent, "types": {
        t: list(READ_VERSIONS) for t in BY_NAME[agent].inputs}}, sort_keys=True)


def advertises(raw: str | bytes | None, message_type: str,
               version: int = WRITE_VERSION) -> bool:
    """Whether an advertisement (None: the key is absent, e.g. a release that predates it)
    lists `message_type` in `version`. An unreadable one lists nothing."""
    if raw is None:
        return False
    try:
        types = json.loads(raw).get("types", {})
        return version in types.get(message_type, ())
    except (ValueError, AttributeError, TypeError):
        return False


class ReaderGate:
    """Whether a gated type may be written now: every reader of it advertises it.

    `fetch(agent)` returns that agent's advertisement (a GET of its key). The answer is cached
    for `cache_s`: one GET per reader every few seconds instead of one per message, and a
    just-upgraded reader is written to a few seconds later at most. A type not in GATED is
    always allowed (the previous release reads it)."""

    def __init__(self, fetch: Callable[[str], str | bytes | None], cache_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch, self._cache_s, self._clock = fetch, cache_s, clock
        self._cached: dict[str, tuple[float, bool]] = {}

    def allows(self, message_type: str) -> bool:
        if message_type not in GATED:
            return True
        now = self._clock()
        at, ok = self._cached.get(message_type, (float("-inf"), False))
        if now - at >= self._cache_s:
            ok = all(advertises(self._fetch(agent), message_type)
                     for agent in consumers(message_type))
            self._cached[message_type] = (now, ok)
        return ok


def fetch_from(r: redis.Redis) -> Callable[[str], str | bytes | None]:
    """A ReaderGate's fetch over a Redis client. A Redis whose ACL predates the writer's read
    grant (bus/acl.py) refuses the GET: that reads as "not advertised", the safe answer."""
    def fetch(agent: str) -> str | bytes | None:
        try:
            return r.get(reads_key(agent))
        except redis.exceptions.NoPermissionError:
            return None
    return fetch
