"""AGENT_01, rolling upgrades: envelopes carry a schema version; a reader accepts N and N-1,
refuses anything else naming the version, and reads a missing version as 1."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ark_runtime.bus.codec import (
    PROTOCOL_VERSION,
    READ_VERSIONS,
    VERSION_WHEN_MISSING,
    WRITE_VERSION,
    decode_canonical,
)
from ark_runtime.bus.envelope import Envelope, EnvelopeError
from ark_runtime.market import SyntheticAdapter

pytestmark = pytest.mark.requirement("AGENT_01")
BAR = next(iter(SyntheticAdapter(["AAPL"], seed=0, bars=1)))
N = PROTOCOL_VERSION


def wire(**changes) -> dict[str, str]:
    env = Envelope.new("market.bar", BAR, from_agent="kyle", to_agent="joey")
    data = json.loads(env.to_fields()["envelope"])
    data.update(changes)
    return {"envelope": json.dumps(data)}


def without_version() -> dict[str, str]:
    fields = wire()
    data = json.loads(fields["envelope"])
    del data["v"]
    return {"envelope": json.dumps(data)}


def test_the_window_is_n_minus_one_and_n() -> None:
    assert READ_VERSIONS == (N - 1, N)


def test_this_release_writes_what_the_previous_release_reads() -> None:
    # The release before this one read only version 1 (its check was `v == 1`): every
    # envelope this release writes must pass that check, or a half-rolled fleet loses them.
    assert WRITE_VERSION == 1
    env = Envelope.new("market.bar", BAR, from_agent="kyle", to_agent="joey")
    assert json.loads(env.to_fields()["envelope"])["v"] == 1


@pytest.mark.parametrize("version", [N - 1, N])
def test_n_and_n_minus_one_are_read_on_both_paths(version) -> None:
    fields = wire(v=version)
    fast = decode_canonical(fields["envelope"])
    assert fast is not None and fast[0]["v"] == version  # the fast path keeps what it read
    assert Envelope.from_fields(fields).v == version
    assert Envelope.from_fields_reference(fields).v == version


@given(st.integers(min_value=N + 1, max_value=2**63))
def test_a_newer_version_is_refused_naming_it(version) -> None:
    fields = wire(v=version)
    assert decode_canonical(fields["envelope"]) is None
    with pytest.raises(EnvelopeError) as info:
        Envelope.from_fields(fields)
    message = str(info.value)
    assert message.startswith("unsupported-version:")
    assert f"schema version {version} is newer" in message


@given(st.integers(max_value=N - 2, min_value=-(2**63)))
def test_an_older_version_is_refused_naming_it(version) -> None:
    with pytest.raises(EnvelopeError) as info:
        Envelope.from_fields(wire(v=version))
    assert f"schema version {version} is older" in str(info.value)


@given(st.one_of(st.booleans(), st.floats(allow_nan=False), st.text(max_size=8),
                 st.none(), st.lists(st.integers(), max_size=2)))
def test_a_version_that_is_not_a_whole_number_is_refused_naming_the_field(value) -> None:
    with pytest.raises(EnvelopeError) as info:
        Envelope.from_fields(wire(v=value))
    assert str(info.value).startswith("schema-invalid: v: Input should be a valid integer")


@pytest.mark.parametrize("value", [True, "2", 2.0, "7"])
def test_a_version_is_a_json_integer_not_a_lookalike(value) -> None:
    with pytest.raises(EnvelopeError, match="schema-invalid: v: Input should be a valid "
                       "integer"):
        Envelope.from_fields(wire(v=value))


def test_a_missing_version_is_read_as_version_one() -> None:
    assert VERSION_WHEN_MISSING == 1 and 1 in READ_VERSIONS
    fields = without_version()
    assert Envelope.from_fields(fields).v == 1
    assert Envelope.from_fields_reference(fields).v == 1


def _plan():
    from ark_runtime.patterns import PatternDetector
    from ark_runtime.planner import AccountConfig, PlanError, plan_trade

    detector = PatternDetector()
    for bar in SyntheticAdapter(["AAPL"], seed=1, bars=3000):
        for pattern in detector.update(bar):
            try:
                return plan_trade(pattern, AccountConfig(account_size=100000))
            except PlanError:
                continue
    raise AssertionError("no plan from the synthetic feed")


def test_a_field_a_later_version_added_is_left_out_of_the_older_form() -> None:
    from ark_runtime.bus.codec import ADDED_IN_VERSION, WRITE_VERSION

    plan = _plan()
    assert ADDED_IN_VERSION["trade.plan"]["hold_bars"] > WRITE_VERSION
    sent = json.loads(Envelope.new("trade.plan", plan, from_agent="kenny",
                                   to_agent="hrm").to_fields()["envelope"])
    assert "hold_bars" not in sent["payload"] and sent["v"] == WRITE_VERSION
    read = Envelope.from_fields(Envelope.new("trade.plan", plan, from_agent="kenny",
                                             to_agent="hrm").to_fields()).body()
    assert read == plan  # the default comes back on reading: nothing was lost


@given(st.integers(min_value=1, max_value=100_000).filter(lambda n: n != 20))
def test_a_value_the_older_form_cannot_carry_is_refused_naming_the_field(hold) -> None:
    plan = _plan().model_copy(update={"hold_bars": hold})
    with pytest.raises(ValueError, match=rf"payload.hold_bars={hold} cannot be written as "
                                         r"envelope version 1"):
        Envelope.new("trade.plan", plan, from_agent="kenny", to_agent="hrm")
