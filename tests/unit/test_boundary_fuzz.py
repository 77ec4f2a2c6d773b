"""Property-based fuzzing of the pipeline boundaries (issue #7 section 4, SEC_02/AGENT_01/04):
feed rows, envelopes and ruleset documents with extreme and malformed values. Each input is
either accepted or refused with the project's own error naming the field; nothing else
escapes (no OverflowError, TypeError, KeyError ...)."""

from __future__ import annotations

import copy
import csv
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ark_runtime.bus.envelope import Envelope, EnvelopeError
from ark_runtime.hrm.engine import RuleEngine
from ark_runtime.hrm.ruleset import DEFAULT_RULESET, Ruleset, RulesetError, parse_ruleset
from ark_runtime.market import Bar, BarError, ReplayAdapter, SyntheticAdapter
from ark_runtime.patterns import PatternDetector
from ark_runtime.planner import AccountConfig, plan_trade

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# -- value strategies ----------------------------------------------------------------------

offsets = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60, 23 * 60))
# Aware datetimes over the whole calendar, the edges included: near datetime.min/max a
# non-zero offset pushes the UTC value off the calendar.
edge_datetimes = st.one_of(
    st.datetimes(min_value=datetime.min, max_value=datetime.max, timezones=offsets),
    st.sampled_from([datetime.min, datetime.max]).flatmap(
        lambda d: offsets.map(lambda tz: d.replace(tzinfo=tz))),
)
datetime_text = st.one_of(
    edge_datetimes.map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime.min, max_value=datetime.max).map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                     "9999-12-31T23:59:59+00:00", "0000-00-00", "2024-13-40T25:61:00Z",
                     "", "now", "1e308"]),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=50),
    st.text(min_size=5000, max_size=6000, alphabet=st.characters(codec="utf-8")),
)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
malformed = st.one_of(json_values, datetime_text)

BAR = next(iter(SyntheticAdapter(["AAPL"], seed=0, bars=1)))
GOOD_ROW = BAR.model_dump(mode="json")
BAR_FIELDS = tuple(GOOD_ROW)


def a_pattern():
    detector = PatternDetector()
    for bar in SyntheticAdapter(["AAPL"], seed=0, bars=400):
        for pattern in detector.update(bar):
            return pattern
    raise AssertionError("no pattern in the synthetic feed")


PATTERN = a_pattern()
PLAN = plan_trade(PATTERN, AccountConfig(account_size=100_000, risk_per_trade=0.01))
SAMPLES = {
    "market.bar": (BAR, "kyle", "joey"),
    "pattern.detected": (PATTERN, "joey", "kenny"),
    "trade.plan": (PLAN, "kenny", "hrm"),
}


# -- feed rows -----------------------------------------------------------------------------

@st.composite
def feed_rows(draw: st.DrawFn) -> dict[str, Any]:
    row = dict(GOOD_ROW)
    for name in draw(st.sets(st.sampled_from(BAR_FIELDS), min_size=1, max_size=3)):
        if draw(st.booleans()) and draw(st.booleans()):
            row.pop(name)
        elif name == "ts":
            row[name] = draw(st.one_of(datetime_text, malformed))
        else:
            row[name] = draw(malformed)
    if draw(st.booleans()) and draw(st.booleans()):
        row[draw(st.text(min_size=1, max_size=20))] = draw(json_scalars)
    return row


@pytest.mark.requirement("SEC_02")
@FUZZ
@given(row=feed_rows())
def test_bar_accepts_or_names_the_field(row: dict[str, Any]) -> None:
    try:
        bar = Bar.model_validate(row)
    except pydantic.ValidationError as exc:
        locs = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        assert locs or exc.errors()[0]["type"] == "value_error"  # model-level (OHLC) check
        assert locs <= set(row) | set(BAR_FIELDS)
        return
    assert bar.ts.tzinfo is not None and bar.ts.utcoffset() == timedelta(0)


@pytest.mark.requirement("SEC_02")
@FUZZ
@given(rows=st.lists(st.one_of(feed_rows(), json_values), min_size=1, max_size=6))
def test_replay_feed_never_raises_and_loses_no_row(tmp_path_factory: Any,
                                                   rows: list[Any]) -> None:
    path: Path = tmp_path_factory.mktemp("feed") / "feed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    errors: list[BarError] = []
    bars = list(ReplayAdapter(path, on_error=errors.append))
    # Every line is either a bar or a reported error with its line number: nothing dropped.
    assert len(bars) + len(errors) == len(rows)
    assert all(e.line >= 1 and e.message for e in errors)


@pytest.mark.requirement("SEC_02")
@FUZZ
@given(rows=st.lists(feed_rows(), min_size=1, max_size=6))
def test_csv_feed_never_raises_and_loses_no_row(tmp_path_factory: Any,
                                                rows: list[dict[str, Any]]) -> None:
    path: Path = tmp_path_factory.mktemp("feed") / "feed.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(BAR_FIELDS)
        for row in rows:
            writer.writerow([_cell(row.get(name)) for name in BAR_FIELDS])
    errors: list[BarError] = []
    bars = list(ReplayAdapter(path, on_error=errors.append))
    # A cell with a newline spans lines, so count rows, not lines.
    assert len(bars) + len(errors) == len(rows)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("\r", " ")  # a lone CR cannot round-trip through the csv module


# -- envelopes -----------------------------------------------------------------------------

ENVELOPE_FIELDS = ("v", "message_id", "correlation_id", "causation_id", "from_agent",
                   "to_agent", "type", "payload", "timestamp", "ttl", "priority")
OPTIONAL = {"v", "causation_id", "ttl", "priority"}


@st.composite
def wire_envelopes(draw: st.DrawFn) -> tuple[dict[str, Any], str, bool]:
    """(envelope JSON object, the field changed, whether it was removed)."""
    kind = draw(st.sampled_from(sorted(SAMPLES)))
    model, src, dst = SAMPLES[kind]
    data = json.loads(Envelope.new(kind, model, from_agent=src, to_agent=dst)
                      .to_fields()["envelope"])
    name = draw(st.sampled_from(ENVELOPE_FIELDS))
    removed = draw(st.booleans()) and draw(st.booleans())
    if removed:
        data.pop(name)
    elif name == "timestamp":
        data[name] = draw(st.one_of(datetime_text, malformed))
    elif name == "payload":
        payload = copy.deepcopy(data["payload"])
        key = draw(st.sampled_from(sorted(payload)))
        payload[key] = draw(st.one_of(datetime_text, malformed))
        data[name] = payload
    else:
        data[name] = draw(malformed)
    return data, name, removed


@pytest.mark.requirement("AGENT_01")
@FUZZ
@given(case=wire_envelopes())
def test_envelope_accepts_or_names_the_field(case: tuple[dict[str, Any], str, bool]) -> None:
    data, name, removed = case
    try:
        env = Envelope.from_fields({"envelope": json.dumps(data)})
    except EnvelopeError as exc:
        if name == "v" and str(exc).startswith("unsupported-version:"):
            # A whole number outside N-1..N: its own reason, naming the version read.
            assert f"schema version {data['v']} is" in str(exc), str(exc)
            return
        assert str(exc).startswith("schema-invalid")
        assert name in str(exc) or (name == "type" and "payload" in str(exc)), str(exc)
        return
    assert not removed or name in OPTIONAL
    # A decoded envelope is safe to use: expiry arithmetic and re-encoding never raise.
    env.expired()
    env.expired(datetime.max.replace(tzinfo=UTC))
    env.expired(datetime.min.replace(tzinfo=UTC))
    assert Envelope.from_fields(env.to_fields()) == env


@pytest.mark.requirement("AGENT_01")
@FUZZ
@given(raw=st.one_of(st.text(max_size=200), json_values.map(json.dumps),
                     st.binary(max_size=50).map(lambda b: b.decode("latin-1"))),
       extra=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3))
def test_any_stream_entry_is_an_envelope_or_an_envelope_error(raw: str,
                                                              extra: dict[str, str]) -> None:
    fields = {**extra, "envelope": raw}
    try:
        Envelope.from_fields(fields)
    except EnvelopeError as exc:
        assert str(exc).startswith("schema-invalid")


# -- ruleset documents ---------------------------------------------------------------------

GOOD_RULESET = yaml.safe_load(DEFAULT_RULESET.read_text(encoding="utf-8"))
RULE_KEYS = ("id", "severity", "message", "description", "field", "operator", "value",
             "case_sensitive", "when", "then")


@st.composite
def ruleset_documents(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)  # not even a mapping
    doc = copy.deepcopy(GOOD_RULESET)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "rule", "rule_item", "breaker"]))
        if where == "top":
            doc[draw(st.sampled_from(["version", "strict_mode", "rules",
                                      "circuit_breakers", "extra"]))] = draw(malformed)
        elif where == "breaker":
            doc["circuit_breakers"] = {
                **(doc.get("circuit_breakers") if isinstance(doc.get("circuit_breakers"),
                                                             dict) else {}),
                draw(st.sampled_from(["daily_loss_limit", "consecutive_losses",
                                      "size_factor"])): draw(malformed)}
        elif isinstance(doc.get("rules"), list) and doc["rules"]:
            index = draw(st.integers(0, len(doc["rules"]) - 1))
            if where == "rule_item":
                doc["rules"][index] = draw(malformed)
            elif isinstance(doc["rules"][index], dict):
                doc["rules"][index][draw(st.sampled_from(RULE_KEYS))] = draw(malformed)
    return doc


@pytest.mark.requirement("AGENT_04")
@FUZZ
@given(doc=ruleset_documents())
def test_ruleset_parses_or_raises_ruleset_error(doc: Any) -> None:
    try:
        ruleset = parse_ruleset(doc, "fuzz.yaml")
    except RulesetError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert all(p.startswith(("rule ", "ruleset")) for p in exc.problems), exc.problems
        return
    assert isinstance(ruleset, Ruleset)
    # A ruleset that loads can judge any plan without raising.
    RuleEngine(ruleset).evaluate(PLAN.rule_input())


@pytest.mark.requirement("AGENT_04")
@FUZZ
@given(text=st.one_of(st.text(max_size=300), json_values.map(yaml.safe_dump)))
def test_ruleset_file_of_any_text_raises_only_ruleset_error(tmp_path_factory: Any,
                                                            text: str) -> None:
    from ark_runtime.hrm.ruleset import load_ruleset

    path = tmp_path_factory.mktemp("rs") / "HRM_RULESET.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_ruleset(path)
    except RulesetError as exc:
        assert exc.problems
