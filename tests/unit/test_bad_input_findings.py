"""Issue #7 section 4: the fuzz findings, one test each (each failed before its fix)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest
import redis

from ark_runtime.agents.consumer import ConsumerAgent
from ark_runtime.bus.envelope import Envelope, EnvelopeError
from ark_runtime.bus.streams import BusSettings, Delivery, with_backoff
from ark_runtime.hrm.ruleset import RulesetError, parse_ruleset
from ark_runtime.market import Bar, BarError, ReplayAdapter, SyntheticAdapter
from ark_runtime.patterns import Pattern

BAR = next(iter(SyntheticAdapter(["AAPL"], seed=0, bars=1)))
ROW = BAR.model_dump(mode="json")
EARLY = "0001-01-01T00:00:00+14:00"  # before datetime.min once moved to UTC
LATE = "9999-12-31T23:59:59-14:00"  # after datetime.max once moved to UTC


def wire(env: Envelope, **changes: Any) -> dict[str, str]:
    data = json.loads(env.to_fields()["envelope"])
    data.update(changes)
    return {"envelope": json.dumps(data)}


def bar_envelope() -> Envelope:
    return Envelope.new("market.bar", BAR, from_agent="kyle", to_agent="joey")


# -- 1. out-of-range timestamps ------------------------------------------------------------

@pytest.mark.parametrize("ts", [EARLY, LATE])
def test_bar_out_of_range_timestamp_is_a_validation_error_naming_ts(ts: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"(?s)ts\b.*out of range"):
        Bar.model_validate({**ROW, "ts": ts})


def test_feed_row_out_of_range_is_reported_and_the_feed_continues(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    later = {**ROW, "ts": "2024-01-02T14:31:00+00:00"}
    feed.write_text("\n".join(json.dumps(r) for r in ({**ROW, "ts": EARLY}, later)) + "\n")
    errors: list[BarError] = []
    bars = list(ReplayAdapter(feed, on_error=errors.append))
    assert [b.ts.isoformat() for b in bars] == ["2024-01-02T14:31:00+00:00"]
    assert len(errors) == 1 and errors[0].line == 1 and "ts" in errors[0].message


@pytest.mark.parametrize("ts", [LATE, EARLY, "9999-12-31T23:59:59+00:00"])
def test_envelope_out_of_range_timestamp_is_an_envelope_error(ts: str) -> None:
    with pytest.raises(EnvelopeError, match="timestamp"):
        Envelope.from_fields(wire(bar_envelope(), timestamp=ts))


def test_payload_out_of_range_timestamp_is_an_envelope_error() -> None:
    with pytest.raises(EnvelopeError, match=r"payload.*ts"):
        Envelope.from_fields(wire(bar_envelope(), payload={**ROW, "ts": EARLY}))


def test_expired_never_overflows() -> None:
    env = bar_envelope()
    assert env.expired(datetime.max.replace(tzinfo=UTC)) is True
    assert env.expired(datetime.min.replace(tzinfo=UTC)) is False


class FakeInbox:
    """Records outcomes; the consumer's decode/refusal logic is what is under test."""

    def __init__(self) -> None:
        self.dead: list[tuple[str, str]] = []
        self.committed: list[str] = []

    def dead_letter(self, delivery: Delivery, reason: str) -> str:
        self.dead.append((delivery.entry_id, reason))
        return "1-0"

    def already_done(self, _mid: str) -> bool:
        return False

    def commit(self, delivery: Delivery, outputs: Any, state: Any = ()) -> bool:
        self.committed.append(delivery.entry_id)
        return True

    def commit_many(self, commits: Any) -> list[bool]:
        return [self.commit(*c) for c in commits]


class Echo(ConsumerAgent):
    name = "joey"
    accepts = ("market.bar",)

    def handle(self, envelope: Envelope) -> list:
        return []


def echo_agent() -> Echo:
    agent = Echo(env={})
    agent.settings = BusSettings()
    agent.inbox = FakeInbox()  # type: ignore[assignment]
    agent.processed = 0
    return agent


@pytest.mark.parametrize("deliveries", [1, 99])
def test_unparseable_entry_is_dead_lettered_and_the_next_one_processed(deliveries: int) -> None:
    agent = echo_agent()
    bad = Delivery("ark:stream:joey", "1-0", wire(bar_envelope(), timestamp=LATE), deliveries)
    good = Delivery("ark:stream:joey", "2-0", bar_envelope().to_fields(), 1)
    agent.process(bad)
    agent.process(good)
    assert [e for e, _ in agent.inbox.dead] == ["1-0"]
    assert "timestamp" in agent.inbox.dead[0][1]
    assert agent.inbox.committed == ["2-0"]


def test_decoder_bug_still_dead_letters(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever a future payload model raises, one entry must not crash-loop the agent.
    def boom(_fields: dict[str, str]) -> Envelope:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(Envelope, "from_fields", staticmethod(boom))
    agent = echo_agent()
    agent.process(Delivery("ark:stream:joey", "1-0", {"envelope": "[]"}, 1))
    assert agent.inbox.dead and "RecursionError" in agent.inbox.dead[0][1]


# -- 2. malformed ruleset ------------------------------------------------------------------

@pytest.mark.parametrize("rules", [[None], [1], ["x"], [[]], None, "rules", [{"then": None}]])
def test_ruleset_with_non_mapping_rule_is_a_ruleset_error(rules: Any) -> None:
    with pytest.raises(RulesetError, match="rule"):
        parse_ruleset({"version": "1", "strict_mode": True, "rules": rules})


# -- 4. Pattern.symbol ---------------------------------------------------------------------

def pattern_payload(**changes: Any) -> dict[str, Any]:
    return {"symbol": "AAPL", "kind": "breakout", "direction": "long", "confidence": 0.5,
            "price": 10.0, "ts": "2024-01-02T14:30:00+00:00", "indicators": {}, **changes}


@pytest.mark.parametrize("symbol", ["aapl", "", "A" * 40, "AAPL\n", "Ä"])
def test_pattern_symbol_is_validated_at_decode(symbol: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="symbol"):
        Pattern.model_validate(pattern_payload(symbol=symbol))
    env = Envelope.new("pattern.detected", pattern_payload(), from_agent="joey",
                       to_agent="kenny")
    with pytest.raises(EnvelopeError, match=r"payload.*symbol"):
        Envelope.from_fields(wire(env, payload=pattern_payload(symbol=symbol)))


def test_pattern_timestamp_needs_a_timezone() -> None:
    with pytest.raises(pydantic.ValidationError, match="ts"):
        Pattern.model_validate(pattern_payload(ts="2024-01-02T14:30:00"))


# -- 5. wrong Redis password ---------------------------------------------------------------

def test_authentication_failure_is_not_retried() -> None:
    calls: list[int] = []

    def refuse() -> None:
        calls.append(1)
        raise redis.AuthenticationError("invalid username-password pair")

    with pytest.raises(redis.AuthenticationError):
        with_backoff(refuse, attempts=8, base=0.0)
    assert calls == [1]


def test_connection_errors_are_still_retried() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise redis.ConnectionError("refused")
        return "ok"

    assert with_backoff(flaky, attempts=8, base=0.0) == "ok"
    assert len(calls) == 3


def test_timestamp_edge_arithmetic_sanity() -> None:
    # The strings above really are outside the UTC range (guards the test's own premise).
    with pytest.raises(OverflowError):
        datetime.fromisoformat(EARLY).astimezone(UTC)
    with pytest.raises(OverflowError):
        datetime.fromisoformat(LATE).astimezone(UTC)
    with pytest.raises(OverflowError):
        datetime.max.replace(tzinfo=UTC) + timedelta(seconds=1)


@pytest.mark.parametrize("body", ["rules: [null]\n", "rules: [1, {id: X}]\n", "- 1\n",
                                  "version: '1'\nstrict_mode: true\nrules: [[]]\n"])
def test_hrm_check_reports_a_malformed_ruleset_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str) -> None:
    from ark_runtime.hrm.__main__ import main

    path = tmp_path / "HRM_RULESET.yaml"
    path.write_text(body, encoding="utf-8")
    rc = main(["check", str(path)])  # the exit code itself is wired by exitcodes.py
    err = capsys.readouterr().err
    assert rc != 0 and "invalid HRM ruleset" in err and "Traceback" not in err


# -- feed files that are not clean text ----------------------------------------------------

HEADER = "symbol,ts,open,high,low,close,volume\n"
GOOD_CSV = "AAPL,2024-01-02T14:31:00+00:00,1,1,1,1,1\n"


@pytest.mark.parametrize(("name", "content", "why"), [
    ("huge.csv", (HEADER + "AAPL," + "x" * 200_000 + ",1,1,1,1,1\n" + GOOD_CSV).encode(),
     "CSV"),
    ("bytes.csv", HEADER.encode() + b"AA\xffPL,2024-01-02T14:30:00+00:00,1,1,1,1,1\n"
     + GOOD_CSV.encode(), "symbol"),
    ("bytes.jsonl", b"\xff\xfe{}\n" + json.dumps({**ROW, "ts": "2024-01-02T14:31:00+00:00"})
     .encode() + b"\n", "UTF-8"),
])
def test_feed_file_with_bad_bytes_or_huge_cells_reports_the_row(
        tmp_path: Path, name: str, content: bytes, why: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    errors: list[BarError] = []
    bars = list(ReplayAdapter(path, on_error=errors.append))
    assert [b.ts.isoformat() for b in bars] == ["2024-01-02T14:31:00+00:00"]
    assert len(errors) == 1 and errors[0].line == (1 if name.endswith("jsonl") else 2)
    assert why in errors[0].message
