"""HRM: the rule engine that arbitrates every trade plan (AGENT_04)."""

from ark_runtime.hrm.breakers import BREAKERS, BreakerState
from ark_runtime.hrm.engine import Decision, Exposure, RuleEngine, Violation, evaluate_check
from ark_runtime.hrm.ruleset import (
    DEFAULT_RULESET,
    BreakerConfig,
    Check,
    ExposureLimits,
    Rule,
    Ruleset,
    RulesetError,
    check_ruleset_file,
    load_ruleset,
    parse_ruleset,
)

__all__ = [
    "BREAKERS",
    "DEFAULT_RULESET",
    "BreakerConfig",
    "BreakerState",
    "Check",
    "Decision",
    "Exposure",
    "ExposureLimits",
    "Rule",
    "RuleEngine",
    "Ruleset",
    "RulesetError",
    "Violation",
    "check_ruleset_file",
    "evaluate_check",
    "load_ruleset",
    "parse_ruleset",
]
