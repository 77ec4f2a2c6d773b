"""Bus key names: the streams, done marks, failures hash and hash tags (AGENT_01, issue #12).

Two layouts. Default (one Redis): `ark:stream:<agent>` and each agent's own keys tagged with
its inbox's name, so they share the inbox's slot. Redis Cluster (ARK_BUS_KEY_TAG=ark): every
bus key carries the one tag `{ark}`, so each commit's keys (inbox, marks, state and the
downstream stream it emits into) hash to one slot and the atomic Lua commit stays legal.
"""

from __future__ import annotations

from ark_runtime.settings import SettingsError, get


def _key_tag() -> str:
    try:
        return get("ARK_BUS_KEY_TAG") or ""
    except SettingsError:  # the process's own settings load names it and exits 78
        return ""


# Redis Cluster layout (ARK_BUS_KEY_TAG=ark): every bus key carries `{ark}`, so each commit's
# keys (inbox, marks, state, the downstream stream) hash to one slot. Unset: the names below
# stay as they always were and each agent's own keys share its inbox's slot.
KEY_TAG = _key_tag()
PREFIX = f"ark:{{{KEY_TAG}}}:stream:" if KEY_TAG else "ark:stream:"
DEAD_STREAM = f"{PREFIX}dead"
ERRORS_STREAM = f"{PREFIX}errors"
DECISIONS_STREAM = f"{PREFIX}decisions"

def inbox(agent: str) -> str:
    return f"{PREFIX}{agent}"


def slot_tag(agent: str) -> str:
    """The Redis Cluster hash tag of an agent's key family: its inbox's name in braces. A key
    carrying it hashes like the inbox itself (a name without braces hashes whole), so the
    agent's done marks, failures hash and state keys share the inbox's slot. Under the
    cluster layout it is the one pipeline tag for every agent."""
    return "{" + (KEY_TAG or inbox(agent)) + "}"


def kyle_cursor_key(feed_id: str) -> str:
    """Kyle's feed cursor, written in the EXEC with the bars (tagged under the cluster
    layout so that transaction stays in one slot)."""
    return f"ark:kyle:{{{KEY_TAG}}}:cursor:{feed_id}" if KEY_TAG else f"ark:kyle:cursor:{feed_id}"


def _owned(agent: str) -> str:
    # Under the one cluster tag the tag no longer names the agent: the name follows it.
    return f"{slot_tag(agent)}:{agent}" if KEY_TAG else slot_tag(agent)


def done_key(agent: str, message_id: str) -> str:
    return f"ark:done:{_owned(agent)}:{message_id}"


def failures_key(agent: str) -> str:
    return f"ark:failures:{_owned(agent)}"


# The executor's fills and closes, broadcast for readers other than HRM (console, trace).
POSITIONS_STREAM = f"{PREFIX}positions"
SIDE_STREAMS = (DEAD_STREAM, ERRORS_STREAM, DECISIONS_STREAM, POSITIONS_STREAM)


def risk_state_key() -> str:
    """HRM's published risk state (breakers, P&L, streak, exposure): one JSON string, set in
    the commit that acks the message that changed it, read by the console, the exporter and
    `invoke`, so every host sees the one state (tagged like HRM's own keys)."""
    return f"ark:risk:{_owned('hrm')}"


def reads_key(agent: str) -> str:
    """What an agent reads (message types and envelope versions, bus/advert.py), set by the
    agent itself at start and refreshed: a writer sends a new type only to readers listing it."""
    return f"ark:reads:{_owned(agent)}"


def executor_books_key() -> str:
    """The executor's books (a hash: symbol -> SymbolBook JSON), written with each ack."""
    return f"ark:state:{_owned('executor')}:books"
