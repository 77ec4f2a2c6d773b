"""AGENT_01 / issue #12: the msgspec fast path decodes exactly like the pydantic reference.

Generated valid envelopes (bars, patterns, plans) and the same envelopes with one field
changed to an arbitrary JSON value, removed, or joined by an unknown field: `from_fields`
(fast path first) and `from_fields_reference` (pydantic only) must agree on accept/reject,
give the same envelope when they accept and the same error, naming the field, when they
refuse. The fast path must also really be taken for the canonical form.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ark_runtime.bus.codec import decode_canonical
from ark_runtime.bus.envelope import Envelope, EnvelopeError
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector
from ark_runtime.planner import AccountConfig, PlanError, plan_trade

pytestmark = pytest.mark.requirement("AGENT_01")

BARS = list(SyntheticAdapter(["AAPL", "BTC-USD", "BRK.B"], seed=3, bars=300))


def _pipeline_payloads() -> list[tuple[str, object, str, str]]:
    detector, account = PatternDetector(), AccountConfig(account_size=100000)
    out: list[tuple[str, object, str, str]] = [
        ("market.bar", b, "kyle", "joey") for b in BARS[:40]]
    for bar in BARS:
        for pattern in detector.update(bar):
            out.append(("pattern.detected", pattern, "joey", "kenny"))
            with contextlib.suppress(PlanError):
                out.append(("trade.plan", plan_trade(pattern, account), "kenny", "hrm"))
    return out


PAYLOADS = _pipeline_payloads()
FIELDS = ("v", "message_id", "correlation_id", "causation_id", "from_agent", "to_agent",
          "type", "payload", "timestamp", "ttl", "priority")

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from([
        "kyle", "joey", "operator", "market.bar", "trade.plan", "1", "3600", "5", 1.0, 3600.0,
        "2024-01-02T14:30:00Z", "2024-01-02T14:30:00", "2024-01-02 14:30:00Z",
        "2024-01-02T14:30:00.1234567Z", "2024-01-02T14:30:00+05:30", "2024-13-02T14:30:00Z",
        "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00",
        "2024-01-02T24:00:00Z", "2024-01-02T23:59:60Z", 1704205800, "1704205800",
        "6F0B3B1E-59B5-4F4E-9A57-2B1F0A6C0A11", "6f0b3b1e-59b5-4f4e-9a57-2b1f0a6c0a11",
        "{6f0b3b1e-59b5-4f4e-9a57-2b1f0a6c0a11}", "6f0b3b1e59b54f4e9a572b1f0a6c0a11",
        7 * 24 * 3600, 7 * 24 * 3600 + 1, 0, 9, 10, -1]),
)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)

# Near misses per field, so each field's edge cases come up often, not once in a thousand.
uuid_spellings = st.builds(
    lambda u, how: {"upper": u.upper(), "braces": "{" + u + "}", "hex": u.replace("-", ""),
                    "urn": "urn:uuid:" + u, "plain": u, "space": u + " "}[how],
    st.uuids().map(str), st.sampled_from(["upper", "braces", "hex", "urn", "plain", "space"]))
times = st.datetimes(timezones=st.one_of(st.none(), st.timezones()))
time_spellings = st.one_of(
    times.map(lambda t: t.isoformat()), times.map(lambda t: t.isoformat(sep=" ")),
    times.map(lambda t: t.isoformat().replace("+00:00", "Z")),
    times.map(lambda t: t.isoformat(timespec="seconds")),
    st.integers(-2**40, 2**40), st.floats(-1e12, 1e12))
number_spellings = st.one_of(st.integers(-20, 700000), st.integers(-20, 700000).map(str),
                             st.integers(-20, 700000).map(float), st.booleans())
NEAR_MISSES = {
    "message_id": uuid_spellings, "correlation_id": uuid_spellings,
    "causation_id": st.one_of(st.none(), uuid_spellings), "timestamp": time_spellings,
    "ttl": number_spellings, "priority": number_spellings, "v": number_spellings,
    "from_agent": st.sampled_from(["kyle", "joey", "kenny", "hrm", "bus", "Kyle", " hrm"]),
    "to_agent": st.sampled_from(["kyle", "joey", "kenny", "hrm", "operator", "x"]),
    "type": st.sampled_from(["market.bar", "pattern.detected", "trade.plan", "Market.bar"]),
    "payload": json_values,
}


def outcome(decode, fields: dict[str, str]) -> tuple[str, object]:
    try:
        env = decode(fields)
    except EnvelopeError as exc:
        return "refused", str(exc)
    return "accepted", (env.model_dump(), env.body(), env.to_fields())


def same_outcome(data: dict) -> tuple[str, object]:
    fields = {"envelope": json.dumps(data)}
    fast = outcome(Envelope.from_fields, fields)
    reference = outcome(Envelope.from_fields_reference, fields)
    assert fast == reference
    return fast


def canonical(index: int, ttl: int, priority: int, derived: bool) -> dict:
    type_, payload, sender, receiver = PAYLOADS[index % len(PAYLOADS)]
    parent = Envelope.new("market.bar", BARS[0], from_agent="kyle", to_agent="joey")
    env = Envelope.new(type_, payload, from_agent=sender, to_agent=receiver, ttl=ttl,
                       priority=priority, parent=parent if derived else None)
    return json.loads(env.to_fields()["envelope"])


envelopes = st.builds(canonical, st.integers(0, 10**6), st.integers(1, 7 * 24 * 3600),
                      st.integers(0, 9), st.booleans())


@given(envelopes)
def test_canonical_envelopes_take_the_fast_path_with_the_reference_result(data) -> None:
    raw = json.dumps(data)
    assert decode_canonical(raw) is not None
    assert same_outcome(data)[0] == "accepted"


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes, st.sampled_from(FIELDS), st.data())
def test_one_changed_field_same_verdict_and_the_field_is_named(data, name, draw) -> None:
    data[name] = draw.draw(st.one_of(NEAR_MISSES[name], json_values))
    verdict, detail = same_outcome(data)
    if verdict == "refused":
        # Another registered type makes the payload the field at fault.
        assert name in detail or (name == "type" and "payload is not a valid" in detail)


@given(envelopes, st.sampled_from(FIELDS))
def test_a_missing_field_same_verdict_and_named(data, name) -> None:
    del data[name]
    verdict, detail = same_outcome(data)
    if verdict == "refused":
        assert name in detail
    else:  # only the fields with defaults may be left out
        assert name in {"v", "causation_id", "ttl", "priority"}


@given(envelopes, st.text(min_size=1, max_size=12).filter(lambda k: k not in FIELDS),
       json_values)
def test_an_unknown_field_is_refused_by_name(data, name, value) -> None:
    data[name] = value
    verdict, detail = same_outcome(data)
    assert verdict == "refused" and name in detail


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(envelopes, st.data())
def test_a_changed_payload_field_same_verdict(data, draw) -> None:
    payload = data["payload"]
    key = draw.draw(st.sampled_from(sorted(payload)))
    payload[key] = draw.draw(json_values)
    verdict, detail = same_outcome(data)
    if verdict == "refused":
        assert "payload" in detail


@given(st.text(max_size=300))
def test_arbitrary_text_same_verdict(text) -> None:
    fields = {"envelope": text}
    assert outcome(Envelope.from_fields, fields) == \
        outcome(Envelope.from_fields_reference, fields)


def test_duplicate_keys_mean_what_the_reference_reads() -> None:
    # json.loads keeps the last of a repeated key; the fast path must not read the first.
    data = canonical(0, 3600, 5, False)
    raw = json.dumps(data)[:-1] + ', "priority": 7}'
    fields = {"envelope": raw}
    assert outcome(Envelope.from_fields, fields) == \
        outcome(Envelope.from_fields_reference, fields)
    assert Envelope.from_fields(fields).priority == 7
