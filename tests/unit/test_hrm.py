"""AGENT_04: the HRM ruleset schema, every operator, fail-closed, conditionals, strict mode,
circuit breakers, and the deploy-time check."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ark_runtime.hrm import (
    DEFAULT_RULESET,
    BreakerConfig,
    BreakerState,
    Check,
    RuleEngine,
    RulesetError,
    check_ruleset_file,
    evaluate_check,
    load_ruleset,
    parse_ruleset,
)
from ark_runtime.hrm.__main__ import main as hrm_main

pytestmark = pytest.mark.requirement("AGENT_04")

NOW = datetime(2024, 3, 1, 15, 0, tzinfo=UTC)

GOOD_PLAN: dict[str, Any] = {
    "symbol": "AAPL",
    "direction": "long",
    "entry": 100.0,
    "price": 100.0,
    "stop_loss": 96.0,
    "target": 110.0,
    "position_size": 0.08,
    "quantity": 80,
    "risk_reward": 2.5,
    "max_loss": 0.0032,
    "atr": 2.0,
    "atr_pct": 0.02,
    "avg_volume": 500_000,
    "confidence": 0.8,
    "pattern": "breakout",
    "catalyst": "",
    "source": "technical",
}


def plan(**kw: Any) -> dict[str, Any]:
    out = dict(GOOD_PLAN)
    out.update(kw)
    return out


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD_PLAN.items() if k != key}


@pytest.fixture(scope="module")
def engine() -> RuleEngine:
    return RuleEngine(load_ruleset())


def ids(decision: Any) -> list[str]:
    return [v.rule_id for v in decision.violations]


# --- the seed ruleset ---------------------------------------------------------------------


def test_seed_ruleset_has_the_upstream_rules() -> None:
    rs = load_ruleset()
    assert [r.id for r in rs.rules] == [
        "ETH-001", "ETH-002", "ETH-003", "ETH-004",
        "RISK-001", "RISK-002", "RISK-003", "RISK-004", "RISK-005", "PAT-001",
    ]  # fmt: skip
    c = {r.id: r.check for r in rs.rules}
    assert (c["ETH-001"].field, c["ETH-001"].operator, c["ETH-001"].value) == ("price", "gte", 1)
    assert c["ETH-002"].operator == "not_contains"
    assert set(c["ETH-002"].value) == {"pump", "dump", "coordinated", "manipulation", "scheme"}
    assert (c["ETH-003"].operator, c["ETH-003"].value) == ("not_equals", "insider_tip")
    assert (c["ETH-004"].field, c["ETH-004"].value) == ("avg_volume", 100000)
    assert (c["RISK-001"].operator, c["RISK-001"].value) == ("lte", 0.10)
    assert (c["RISK-002"].field, c["RISK-002"].operator) == ("stop_loss", "exists")
    assert rs.rule("RISK-003").severity == "warning"
    assert (c["RISK-003"].field, c["RISK-003"].value) == ("risk_reward", 2)
    assert (c["RISK-004"].field, c["RISK-004"].value) == ("max_loss", 0.02)
    r5 = rs.rule("RISK-005")
    assert r5.conditional and r5.when[0] == Check("atr_pct", "gte", 0.05)
    assert r5.then == Check("position_size", "lte", 0.05)
    assert (c["PAT-001"].field, c["PAT-001"].value) == ("confidence", 0.65)
    assert rs.strict_mode is False


def test_good_plan_approved(engine: RuleEngine) -> None:
    d = engine.evaluate(GOOD_PLAN, now=NOW)
    assert d.approved and d.violations == [] and d.warnings == []
    assert d.ruleset_version == "1.0.0" and d.evaluated_at == NOW and d.size_multiplier == 1.0


@pytest.mark.parametrize(
    "changes, rule",
    [
        ({"price": 0.5}, "ETH-001"),
        ({"catalyst": "Coordinated PUMP on forums"}, "ETH-002"),
        ({"catalyst": "possible scheme"}, "ETH-002"),
        ({"source": "insider_tip"}, "ETH-003"),
        ({"avg_volume": 99_999}, "ETH-004"),
        ({"position_size": 0.11}, "RISK-001"),
        ({"stop_loss": None}, "RISK-002"),
        ({"max_loss": 0.021}, "RISK-004"),
        ({"atr_pct": 0.06, "position_size": 0.06}, "RISK-005"),
        ({"confidence": 0.64}, "PAT-001"),
    ],
)
def test_each_seed_rule_rejects(engine: RuleEngine, changes: dict[str, Any], rule: str) -> None:
    d = engine.evaluate(plan(**changes))
    assert not d.approved
    assert ids(d) == [rule]
    v = d.violations[0]
    assert v.message and v.severity in ("critical", "error")


def test_boundaries_inclusive(engine: RuleEngine) -> None:
    edge = plan(
        price=1,
        avg_volume=100_000,
        position_size=0.10,
        max_loss=0.02,
        confidence=0.65,
        risk_reward=2,
    )
    assert engine.evaluate(edge).approved


def test_risk005_only_applies_when_volatile(engine: RuleEngine) -> None:
    assert engine.evaluate(plan(atr_pct=0.049, position_size=0.09)).approved
    assert engine.evaluate(plan(atr_pct=0.05, position_size=0.05)).approved
    d = engine.evaluate(plan(atr_pct=0.05, position_size=0.051))
    assert ids(d) == ["RISK-005"]
    assert d.violations[0].field == "position_size"
    assert d.violations[0].actual == 0.051
    assert d.violations[0].expected == {"lte": 0.05}


def test_risk_reward_is_only_a_warning(engine: RuleEngine) -> None:
    d = engine.evaluate(plan(risk_reward=1.5))
    assert d.approved
    assert [w.rule_id for w in d.warnings] == ["RISK-003"]
    assert d.warnings[0].severity == "warning"


def test_strict_mode_rejects_on_warnings() -> None:
    data = yaml.safe_load(DEFAULT_RULESET.read_text())
    data["strict_mode"] = True
    strict = RuleEngine(parse_ruleset(data))
    d = strict.evaluate(plan(risk_reward=1.5))
    assert not d.approved and d.strict_mode
    assert ids(d) == ["RISK-003"] and d.warnings == []


# --- fail closed -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, rule",
    [
        ("price", "ETH-001"),
        ("catalyst", "ETH-002"),
        ("source", "ETH-003"),
        ("avg_volume", "ETH-004"),
        ("position_size", "RISK-001"),
        ("stop_loss", "RISK-002"),
        ("max_loss", "RISK-004"),
        ("atr_pct", "RISK-005"),
        ("confidence", "PAT-001"),
    ],
)
def test_missing_field_fails_closed(engine: RuleEngine, field: str, rule: str) -> None:
    d = engine.evaluate(without(field))
    assert not d.approved
    assert rule in ids(d)
    v = next(v for v in d.violations if v.rule_id == rule)
    assert v.field == field


def test_missing_warning_field_is_reported(engine: RuleEngine) -> None:
    d = engine.evaluate(without("risk_reward"))
    assert [w.rule_id for w in d.warnings] == ["RISK-003"]
    assert "missing" in d.warnings[0].message


def test_empty_plan_rejected_by_every_rule(engine: RuleEngine) -> None:
    d = engine.evaluate({})
    assert not d.approved
    assert set(ids(d)) == {r.id for r in engine.ruleset.rules} - {"RISK-003"}


@pytest.mark.parametrize("bad", ["0.05", True, float("nan"), float("inf"), [0.01]])
def test_wrong_type_fails_closed(engine: RuleEngine, bad: Any) -> None:
    d = engine.evaluate(plan(position_size=bad))
    assert "RISK-001" in ids(d)


def test_wrong_type_in_condition_fails_closed(engine: RuleEngine) -> None:
    d = engine.evaluate(plan(atr_pct="high"))
    assert ids(d) == ["RISK-005"]
    assert "condition" in d.violations[0].message


def test_non_text_catalyst_fails_closed(engine: RuleEngine) -> None:
    assert ids(engine.evaluate(plan(catalyst=42))) == ["ETH-002"]


def test_non_mapping_plan(engine: RuleEngine) -> None:
    d = engine.evaluate(["not", "a", "plan"])  # type: ignore[arg-type]
    assert not d.approved and "HRM-INPUT" in ids(d)


# --- operators ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "check, data, passed",
    [
        (Check("x", "gte", 5), {"x": 5}, True),
        (Check("x", "gte", 5), {"x": 4.99}, False),
        (Check("x", "lte", 5), {"x": 5}, True),
        (Check("x", "lte", 5), {"x": 5.01}, False),
        (Check("x", "eq", "long"), {"x": "LONG"}, True),
        (Check("x", "eq", "long", case_sensitive=True), {"x": "LONG"}, False),
        (Check("x", "eq", 1), {"x": True}, False),
        (Check("x", "eq", 1), {"x": 1.0}, True),
        (Check("x", "not_equals", "a"), {"x": "b"}, True),
        (Check("x", "not_equals", "a"), {"x": "A"}, False),
        (Check("x", "in", ["long", "short"]), {"x": "short"}, True),
        (Check("x", "in", ["long", "short"]), {"x": "flat"}, False),
        (Check("x", "in", [1, 2]), {"x": True}, False),
        (Check("x", "not_contains", ["pump"]), {"x": "earnings beat"}, True),
        (Check("x", "not_contains", ["pump"]), {"x": "PUMPING"}, False),
        (Check("x", "not_contains", ["pump"]), {"x": ["news", "Pump"]}, False),
        (Check("x", "not_contains", ["pump"], case_sensitive=True), {"x": "PUMP"}, True),
        (Check("x", "exists", True), {"x": 0}, True),
        (Check("x", "exists", True), {"x": None}, False),
        (Check("x", "exists", True), {}, False),
        (Check("x", "exists", False), {}, True),
        (Check("x", "exists", False), {"x": 1}, False),
        (Check("a.b", "gte", 1), {"a": {"b": 2}}, True),
        (Check("a.b", "gte", 1), {"a": 2}, False),
    ],
)
def test_operator(check: Check, data: dict[str, Any], passed: bool) -> None:
    assert evaluate_check(check, data).passed is passed


@pytest.mark.parametrize("op", ["gte", "lte", "eq", "not_equals", "in", "not_contains"])
def test_every_operator_except_exists_fails_closed_on_missing(op: str) -> None:
    value = ["a"] if op in ("in", "not_contains") else 1
    outcome = evaluate_check(Check("x", op, value), {})
    assert not outcome.passed and outcome.error and "missing" in outcome.reason


def test_eq_rule_with_not_equals_in_a_ruleset() -> None:
    rs = parse_ruleset({"version": "t", "strict_mode": False, "rules": [
        {"id": "T-001", "severity": "error", "message": "direction must be long",
         "field": "direction", "operator": "eq", "value": "long"},
        {"id": "T-002", "severity": "error", "message": "pattern allowed",
         "field": "pattern", "operator": "in", "value": ["breakout"]},
    ]})  # fmt: skip
    e = RuleEngine(rs)
    assert e.evaluate({"direction": "long", "pattern": "breakout"}).approved
    assert ids(e.evaluate({"direction": "short", "pattern": "ma_cross"})) == ["T-001", "T-002"]


def test_conditional_with_several_conditions() -> None:
    rs = parse_ruleset({"version": "t", "strict_mode": False, "rules": [
        {"id": "C-001", "severity": "error", "message": "short crypto must be small",
         "when": [{"field": "direction", "operator": "eq", "value": "short"},
                  {"field": "symbol", "operator": "not_contains", "value": ["-USD"]}],
         "then": {"field": "position_size", "operator": "lte", "value": 0.02}},
    ]})  # fmt: skip
    e = RuleEngine(rs)
    # all conditions hold -> then is checked
    assert ids(e.evaluate({"direction": "short", "symbol": "AAPL", "position_size": 0.05})) == [
        "C-001"
    ]
    # one condition false -> rule does not apply
    assert e.evaluate({"direction": "long", "symbol": "AAPL", "position_size": 0.05}).approved
    assert e.evaluate({"direction": "short", "symbol": "BTC-USD", "position_size": 0.5}).approved


# --- circuit breakers ---------------------------------------------------------------------------


def test_daily_loss_suspends_approvals(engine: RuleEngine) -> None:
    state = BreakerState(day=NOW.date())
    state = state.record_result(-0.02, NOW).record_result(-0.011, NOW)
    assert state.daily_loss(NOW) == pytest.approx(0.031)
    d = engine.evaluate(GOOD_PLAN, breakers=state, now=NOW)
    assert not d.approved and d.suspended
    assert ids(d) == ["BRK-DAILY-LOSS"]
    # the next UTC day the suspension lifts by itself
    tomorrow = datetime(2024, 3, 2, 0, 1, tzinfo=UTC)
    assert engine.evaluate(GOOD_PLAN, breakers=state, now=tomorrow).approved


def test_daily_loss_below_limit_and_gains_offset(engine: RuleEngine) -> None:
    state = BreakerState(day=NOW.date()).record_result(-0.025, NOW).record_result(0.01, NOW)
    assert engine.evaluate(GOOD_PLAN, breakers=state, now=NOW).approved


def test_consecutive_losses_halve_size(engine: RuleEngine) -> None:
    state = BreakerState(day=NOW.date())
    for _ in range(2):
        state = state.record_result(-0.001, NOW)
    assert engine.evaluate(GOOD_PLAN, breakers=state, now=NOW).size_multiplier == 1.0
    state = state.record_result(-0.001, NOW)
    d = engine.evaluate(GOOD_PLAN, breakers=state, now=NOW)
    assert d.approved and d.size_multiplier == 0.5
    # a win ends the streak; break-even does not
    assert state.record_result(0.0, NOW).consecutive_losses == 3
    assert state.record_result(0.001, NOW).consecutive_losses == 0
    assert state.reset_streak().consecutive_losses == 0


def test_breaker_state_round_trips_as_dict() -> None:
    state = BreakerState(day=date(2024, 3, 1), daily_pnl=-0.01, consecutive_losses=2)
    assert BreakerState.model_validate(state.model_dump(mode="json")) == state


def test_breakers_optional_in_ruleset() -> None:
    rs = parse_ruleset({"version": "t", "strict_mode": False, "rules": [
        {"id": "T-001", "severity": "error", "message": "m", "field": "x", "operator": "exists"}
    ]})  # fmt: skip
    assert rs.breakers == BreakerConfig()
    state = BreakerState(day=NOW.date(), daily_pnl=-0.5, consecutive_losses=50)
    d = RuleEngine(rs).evaluate({"x": 1}, breakers=state, now=NOW)
    assert d.approved and d.size_multiplier == 1.0


# --- schema errors name the rule ----------------------------------------------------------------


def seed() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(DEFAULT_RULESET.read_text()))


def rule_of(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in data["rules"] if r["id"] == rule_id)


def refused(data: Any) -> str:
    with pytest.raises(RulesetError) as info:
        parse_ruleset(data, "test.yaml")
    return str(info.value)


def test_unknown_operator_names_rule() -> None:
    data = seed()
    rule_of(data, "RISK-001")["operator"] = "gt"
    msg = refused(data)
    assert "rule RISK-001" in msg and "operator" in msg and "'gt'" in msg


def test_unknown_operator_in_condition_names_rule() -> None:
    data = seed()
    rule_of(data, "RISK-005")["when"][0]["operator"] = "bigger"
    msg = refused(data)
    assert "rule RISK-005" in msg and "bigger" in msg


def test_missing_field_names_rule() -> None:
    data = seed()
    del rule_of(data, "PAT-001")["field"]
    msg = refused(data)
    assert "rule PAT-001" in msg and "'field' is a required property" in msg


def test_missing_value_names_rule() -> None:
    data = seed()
    del rule_of(data, "ETH-004")["value"]
    assert "rule ETH-004" in refused(data)


def test_wrong_type_names_rule() -> None:
    data = seed()
    rule_of(data, "ETH-001")["value"] = "one"
    msg = refused(data)
    assert "rule ETH-001" in msg and "not of type 'number'" in msg


def test_not_contains_needs_a_list_of_strings() -> None:
    data = seed()
    rule_of(data, "ETH-002")["value"] = "pump"
    assert "rule ETH-002" in refused(data)


def test_bad_severity_names_rule() -> None:
    data = seed()
    rule_of(data, "RISK-003")["severity"] = "meh"
    msg = refused(data)
    assert "rule RISK-003" in msg and "severity" in msg


def test_unknown_key_names_rule() -> None:
    data = seed()
    rule_of(data, "RISK-002")["operater"] = "exists"
    msg = refused(data)
    assert "rule RISK-002" in msg and "operater" in msg


def test_conditional_without_then_names_rule() -> None:
    data = seed()
    del rule_of(data, "RISK-005")["then"]
    msg = refused(data)
    assert "rule RISK-005" in msg and "then" in msg


def test_conditional_mixed_with_simple_check_refused() -> None:
    data = seed()
    rule_of(data, "RISK-005")["field"] = "price"
    assert "rule RISK-005: a conditional rule" in refused(data)


def test_rule_without_id_is_located_by_position() -> None:
    data = seed()
    del data["rules"][2]["id"]
    assert "rule #3 (no id)" in refused(data)


def test_duplicate_rule_id_refused() -> None:
    data = seed()
    data["rules"].append(copy.deepcopy(rule_of(data, "ETH-001")))
    assert "rule ETH-001: duplicate rule id" in refused(data)


def test_top_level_errors() -> None:
    data = seed()
    data["strict_mode"] = "yes"
    assert "ruleset: strict_mode" in refused(data)
    assert "'rules' is a required property" in refused({"version": "1", "strict_mode": False})
    assert "is not of type 'object'" in refused(["a list"])


def test_every_problem_reported_at_once() -> None:
    data = seed()
    rule_of(data, "ETH-001")["operator"] = "gt"
    rule_of(data, "PAT-001")["value"] = "high"
    with pytest.raises(RulesetError) as info:
        parse_ruleset(data)
    joined = "\n".join(info.value.problems)
    assert "ETH-001" in joined and "PAT-001" in joined


def test_load_ruleset_file_errors(tmp_path: Path) -> None:
    with pytest.raises(RulesetError, match="cannot read"):
        load_ruleset(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(RulesetError, match="not valid YAML"):
        load_ruleset(bad)


def test_check_ruleset_file_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_ruleset_file(DEFAULT_RULESET) == []
    assert hrm_main(["check", str(DEFAULT_RULESET)]) == 0
    data = seed()
    rule_of(data, "RISK-004")["operator"] = "less_than"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    problems = check_ruleset_file(bad)
    assert problems and problems[0].startswith("rule RISK-004")
    assert hrm_main(["check", str(bad)]) == 65  # DATAERR: the checked file is the bad input
    assert "rule RISK-004" in capsys.readouterr().err
    bad.write_text("rules: [null]\n")  # a shape the parser does not expect: still 65, no crash
    assert hrm_main(["check", str(bad)]) == 65
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        hrm_main(["chek", str(bad)])
    assert usage.value.code == 64


# --- the whole pipeline on the shipped sample ---------------------------------------------------


def test_sample_feed_yields_approved_and_rejected_plans() -> None:
    from ark_runtime.market import SAMPLE_BARS, ReplayAdapter
    from ark_runtime.patterns import PatternDetector
    from ark_runtime.planner import AccountConfig, plan_trade

    detector, engine = PatternDetector(), RuleEngine()
    account = AccountConfig(account_size=100_000)
    decisions = [
        engine.evaluate(plan_trade(p, account).rule_input())
        for bar in ReplayAdapter(SAMPLE_BARS)
        for p in detector.update(bar)
    ]
    approved = [d for d in decisions if d.approved]
    rejected = [d for d in decisions if not d.approved]
    assert approved and rejected
    assert {v.rule_id for d in rejected for v in d.violations} >= {"PAT-001", "ETH-004"}
