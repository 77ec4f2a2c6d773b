"""The HRM rule engine: evaluates a trade plan (a flat dict) against a `Ruleset`.

Fail closed: a rule that cannot be evaluated (missing field, wrong type) is a violation,
never a pass. Only `exists` treats absence as an answer rather than an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ark_runtime.hrm.breakers import EPSILON, BreakerState
from ark_runtime.hrm.ruleset import (
    BLOCKING,
    BreakerConfig,
    Check,
    ExposureLimits,
    Rule,
    Ruleset,
    load_ruleset,
)
from ark_runtime.validators import validate_utc

__all__ = ["Decision", "Exposure", "Outcome", "RuleEngine", "Violation", "evaluate_check"]

_MISSING = object()
BREAKER_DAILY_LOSS = "BRK-DAILY-LOSS"
BREAKER_LOSS_STREAK = "BRK-LOSS-STREAK"
BREAKER_RULE_IDS = {"daily_loss": BREAKER_DAILY_LOSS, "loss_streak": BREAKER_LOSS_STREAK}
EXPOSURE_SYMBOL = "EXP-SYMBOL"
EXPOSURE_TOTAL = "EXP-TOTAL"


class Exposure(NamedTuple):
    """Open exposure (approved, not yet closed) as fractions of the account."""

    symbol: float  # in the plan's symbol
    total: float


def _breaker_violation(name: str, state: BreakerState, cfg: BreakerConfig,
                       now: datetime) -> Violation:
    if name == "daily_loss":
        return Violation(
            rule_id=BREAKER_DAILY_LOSS, severity="critical", field="daily_loss",
            message=f"breaker daily_loss tripped: this session's realised loss reached "
                    f"{cfg.daily_loss_limit:g} of the account; approvals are suspended until "
                    f"the next session or `ark hrm breaker reset daily_loss`",
            actual=state.daily_loss(now, cfg), expected={"lt": cfg.daily_loss_limit})
    return Violation(
        rule_id=BREAKER_LOSS_STREAK, severity="critical", field="consecutive_losses",
        message=f"breaker loss_streak tripped: {state.consecutive_losses} losing trades in a "
                f"row (limit {cfg.loss_streak_limit}); approvals are suspended until "
                "`ark hrm breaker reset loss_streak`",
        actual=state.consecutive_losses, expected={"lt": cfg.loss_streak_limit})


def _exposure_violations(plan: Mapping[str, Any], multiplier: float, exposure: Exposure,
                         limits: ExposureLimits) -> list[Violation]:
    if limits.per_symbol is None and limits.total is None:
        return []
    size = _lookup(plan, "position_size")
    if not _is_number(size):
        # Cannot tell what the plan adds: fail closed.
        return [Violation(rule_id=EXPOSURE_TOTAL, severity="error", field="position_size",
                          message="position_size is missing or not a number, so the exposure "
                                  "limits cannot be checked (fails closed)",
                          actual=None if size is _MISSING else size)]
    adds = size * multiplier
    out = []
    for rule_id, current, limit, what in (
            (EXPOSURE_SYMBOL, exposure.symbol, limits.per_symbol, "in this symbol"),
            (EXPOSURE_TOTAL, exposure.total, limits.total, "in total")):
        if limit is not None and current + adds > limit + EPSILON:
            out.append(Violation(
                rule_id=rule_id, severity="error", field="position_size",
                message=f"open exposure {what} would be {current + adds:.4g} of the account, "
                        f"past the limit {limit:g}",
                actual=current + adds, expected={"lte": limit}))
    return out


class Violation(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule_id: str
    severity: Literal["critical", "error", "warning"]
    message: str
    field: str
    actual: Any = None
    expected: Any = None


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    approved: bool
    # Failed rules that block approval (critical/error; warnings too in strict mode).
    violations: list[Violation] = Field(default_factory=list)
    # Failed warning rules that did not block approval.
    warnings: list[Violation] = Field(default_factory=list)
    evaluated_at: datetime
    ruleset_version: str
    strict_mode: bool = False
    # Multiply the plan's size by this before booking it (consecutive-loss breaker).
    size_multiplier: float = 1.0
    suspended: bool = False  # the daily-loss breaker is tripped

    @field_validator("evaluated_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # Decisions travel on the bus: an out-of-range time must be a validation error.
        # (Naive values predate this check in stored decisions; they are kept as they are.)
        return value if value.tzinfo is None else validate_utc(value)


def _lookup(plan: Mapping[str, Any], path: str) -> Any:
    value: Any = plan
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return _MISSING if value is None else value


def _is_number(value: Any) -> bool:
    # bool is an int in Python, but "True >= 1" must not pass a numeric rule.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fold(value: Any, case_sensitive: bool) -> Any:
    return value if case_sensitive or not isinstance(value, str) else value.casefold()


class Outcome(NamedTuple):
    passed: bool
    actual: Any = None
    reason: str = ""  # why, when it is more than "the rule's condition is false"
    error: bool = False  # the check could not be evaluated (missing field, wrong type)


def evaluate_check(check: Check, plan: Mapping[str, Any]) -> Outcome:
    actual = _lookup(plan, check.field)
    op, expected = check.operator, check.value
    if op == "exists":
        present = actual is not _MISSING
        return Outcome(present == bool(expected), actual if present else None)
    if actual is _MISSING:
        return Outcome(False, None, f"field {check.field!r} is missing (fails closed)", True)
    if op in ("gte", "lte"):
        if not _is_number(actual):
            return Outcome(False, actual, f"field {check.field!r} is not a finite number", True)
        return Outcome(actual >= expected if op == "gte" else actual <= expected, actual)
    if op in ("eq", "not_equals"):
        same = _same(actual, expected, check.case_sensitive)
        return Outcome(same if op == "eq" else not same, actual)
    if op == "in":
        return Outcome(any(_same(actual, v, check.case_sensitive) for v in expected), actual)
    if op == "not_contains":
        if isinstance(actual, str):
            texts = [actual]
        elif isinstance(actual, list) and all(isinstance(v, str) for v in actual):
            texts = actual
        else:
            return Outcome(False, actual, f"field {check.field!r} is not text", True)
        haystack = [_fold(t, check.case_sensitive) for t in texts]
        found = [w for w in expected if any(_fold(w, check.case_sensitive) in t for t in haystack)]
        return Outcome(not found, actual, f"contains {', '.join(found)}" if found else "")
    # The schema makes this unreachable for loaded rulesets; stay closed if it ever is not.
    return Outcome(False, actual, f"unknown operator {op!r}", True)


def _same(actual: Any, expected: Any, case_sensitive: bool) -> bool:
    # True == 1 in Python; in a ruleset a boolean only equals a boolean.
    if isinstance(actual, bool) != isinstance(expected, bool):
        return False
    return _fold(actual, case_sensitive) == _fold(expected, case_sensitive)


class RuleEngine:
    def __init__(self, ruleset: Ruleset | None = None) -> None:
        self.ruleset = ruleset if ruleset is not None else load_ruleset()

    def _violation(self, rule: Rule, check: Check, actual: Any, reason: str) -> Violation:
        message = rule.message if not reason else f"{rule.message} ({reason})"
        expected: Any = {check.operator: check.value}
        return Violation(
            rule_id=rule.id,
            severity=rule.severity,
            message=message,
            field=check.field,
            actual=actual,
            expected=expected,
        )

    def _evaluate_rule(self, rule: Rule, plan: Mapping[str, Any]) -> Violation | None:
        if rule.conditional:
            assert rule.then is not None
            for cond in rule.when:
                outcome = evaluate_check(cond, plan)
                if outcome.error:
                    # Cannot tell whether the condition applies: fail closed.
                    return self._violation(
                        rule, cond, outcome.actual, f"condition {outcome.reason}"
                    )
                if not outcome.passed:
                    return None  # condition does not apply
            check = rule.then
        else:
            assert rule.check is not None
            check = rule.check
        outcome = evaluate_check(check, plan)
        if outcome.passed:
            return None
        return self._violation(rule, check, outcome.actual, outcome.reason)

    def evaluate(
        self,
        plan: Mapping[str, Any],
        breakers: BreakerState | None = None,
        now: datetime | None = None,
        exposure: Exposure | None = None,
        market_time: datetime | None = None,
    ) -> Decision:
        """`market_time`: the plan's time on the feed's clock (HRM passes its signal bar's),
        which decides the breakers' session; `now` (the decision's time) when not given.
        `exposure`: open exposure now; None skips the limits."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        market_now = market_time or now
        rs = self.ruleset
        blocking: list[Violation] = []
        warnings: list[Violation] = []
        if not isinstance(plan, Mapping):
            blocking.append(
                Violation(
                    rule_id="HRM-INPUT",
                    severity="critical",
                    message="plan is not a mapping",
                    field="",
                    actual=type(plan).__name__,
                )
            )
            plan = {}
        for rule in rs.rules:
            violation = self._evaluate_rule(rule, plan)
            if violation is None:
                continue
            if rule.severity in BLOCKING or rs.strict_mode:
                blocking.append(violation)
            else:
                warnings.append(violation)

        suspended = False
        multiplier = 1.0
        if breakers is not None:
            cfg = rs.breakers
            tripped = breakers.tripped(cfg, market_now)
            suspended = "daily_loss" in tripped
            for name in tripped:
                blocking.append(_breaker_violation(name, breakers, cfg, market_now))
            multiplier = breakers.size_multiplier(cfg)
        if exposure is not None:
            blocking.extend(_exposure_violations(plan, multiplier, exposure, rs.exposure))
        return Decision(
            approved=not blocking,
            violations=blocking,
            warnings=warnings,
            evaluated_at=now,
            ruleset_version=rs.version,
            strict_mode=rs.strict_mode,
            size_multiplier=multiplier,
            suspended=suspended,
        )
