"""AGENT_01: the envelope and the type registry refuse what they should, keep what they should."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ark_runtime.bus.envelope import (
    _NAMESPACE,
    Envelope,
    EnvelopeError,
    _canonical_uuid,
    derive_id,
)
from ark_runtime.bus.registry import REGISTRY, payload_model
from ark_runtime.market import SyntheticAdapter
from ark_runtime.validators import IdError, validate_id

pytestmark = pytest.mark.requirement("AGENT_01")
BAR = next(iter(SyntheticAdapter(["BRK.B"], seed=0, bars=1)))


def bar_env(**kw) -> Envelope:
    return Envelope.new("market.bar", BAR, from_agent="kyle", to_agent="joey", **kw)


def wire(env: Envelope, **changes) -> dict[str, str]:
    data = json.loads(env.to_fields()["envelope"])
    data.update(changes)
    return {"envelope": json.dumps(data)}


def test_round_trip_and_trace_ids() -> None:
    root = bar_env()
    assert root.correlation_id == root.message_id and root.causation_id is None
    assert Envelope.from_fields(root.to_fields()) == root
    child = Envelope.new("market.bar", BAR, from_agent="kyle", to_agent="joey", parent=root)
    assert child.correlation_id == root.correlation_id
    assert child.causation_id == root.message_id
    assert child.message_id != root.message_id


def test_registry_covers_the_pipeline() -> None:
    for name in ("market.bar", "pattern.detected", "trade.plan", "hrm.decision",
                 "error.raised", "control.pause", "control.resume"):
        assert name in REGISTRY
    with pytest.raises(KeyError, match="unknown message type 'nope'"):
        payload_model("nope")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"type": "market.crash"}, "unregistered message type"),
    ({"payload": {**BAR.model_dump(mode="json"), "high": 0.5}}, "payload is not a valid"),
    ({"payload": {**BAR.model_dump(mode="json"), "extra": 1}}, "payload is not a valid"),
    ({"message_id": "not-a-uuid"}, "message_id"),
    ({"correlation_id": "{" + "0" * 32 + "}"}, "correlation_id"),
    ({"from_agent": "mallory"}, "unknown endpoint"),
    ({"ttl": 0}, "ttl"),
    ({"priority": 10}, "priority"),
    ({"timestamp": "2024-01-01T00:00:00"}, "timezone"),
    ({"surprise": True}, "surprise"),
])
def test_invalid_envelopes_say_why(changes, reason) -> None:
    with pytest.raises(EnvelopeError, match="schema-invalid") as info:
        Envelope.from_fields(wire(bar_env(), **changes))
    assert reason in str(info.value)


@pytest.mark.parametrize("fields", [{}, {"envelope": "{"}, {"envelope": "[1]"},
                                    {"envelope": "null"}])
def test_non_envelopes_are_refused(fields) -> None:
    with pytest.raises(EnvelopeError):
        Envelope.from_fields(fields)


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=200), max_size=6))
def test_arbitrary_fields_never_crash_the_parser(fields) -> None:
    with contextlib.suppress(EnvelopeError):
        Envelope.from_fields(fields)


def test_expiry_and_derived_ids() -> None:
    env = bar_env(ttl=60)
    assert not env.expired()
    assert env.expired(datetime.now(UTC) + timedelta(seconds=61))
    assert derive_id(env.message_id, "joey:0") == derive_id(env.message_id, "joey:0")
    assert derive_id(env.message_id, "joey:0") != derive_id(env.message_id, "joey:1")


def test_payload_is_normalised() -> None:
    data = json.loads(bar_env().to_fields()["envelope"])
    data["payload"]["ts"] = "2024-01-02T15:30:00+01:00"
    env = Envelope.from_fields({"envelope": json.dumps(data)})
    assert env.payload["ts"] == "2024-01-02T14:30:00Z"


def _fully_validated(env: Envelope) -> Envelope:
    return Envelope(**{name: getattr(env, name) for name in Envelope.model_fields})


@given(bar=st.sampled_from(list(SyntheticAdapter(["AAPL", "BTC-USD"], seed=1, bars=50))),
       ttl=st.integers(1, 7 * 24 * 3600), priority=st.integers(0, 9), derived=st.booleans())
def test_new_skips_revalidation_only_where_it_gives_the_same_envelope(bar, ttl, priority,
                                                                      derived) -> None:
    # Envelope.new trusts a validated payload model and ids it generates: the result must be
    # exactly what full validation of the same values gives.
    mid = derive_id("feed", str(ttl)) if derived else None
    env = Envelope.new("market.bar", bar, from_agent="kyle", to_agent="joey", ttl=ttl,
                       priority=priority, message_id=mid)
    assert env == _fully_validated(env)
    assert env.to_fields() == _fully_validated(env).to_fields()
    assert env.body() == bar


@pytest.mark.parametrize(("kw", "field"), [
    ({"message_id": "not-a-uuid"}, "message_id"),
    ({"message_id": "6F0B3B1E-59B5-4F4E-9A57-2B1F0A6C0A11"}, None),  # normalised, not trusted
    ({"ttl": 0}, "ttl"), ({"priority": 10}, "priority"), ({"ttl": True}, None),
])
def test_new_still_validates_what_it_cannot_trust(kw, field) -> None:
    if field is None:
        env = bar_env(**kw)
        assert env == _fully_validated(env)
        return
    with pytest.raises(ValueError, match=field):
        bar_env(**kw)


@given(parent=st.text(max_size=80), salt=st.text(max_size=20))
def test_derive_id_is_uuid5_bit_for_bit(parent, salt) -> None:
    # derive_id computes uuid5 by hand (no UUID objects, issue #12): same text as the stdlib.
    assert derive_id(parent, salt) == str(uuid.uuid5(_NAMESPACE, f"{parent}:{salt}"))


@given(value=st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()),
                       st.uuids().map(lambda u: "{" + str(u) + "}"),
                       st.uuids().map(lambda u: u.hex), st.text(max_size=40)))
def test_canonical_uuid_check_matches_validate_id(value) -> None:
    # Envelope.new trusts an id only in the form validate_id returns unchanged; the regex
    # that decides it must agree with validate_id itself.
    try:
        expected = validate_id(value) == value
    except IdError:
        expected = False
    assert _canonical_uuid(value) is expected
