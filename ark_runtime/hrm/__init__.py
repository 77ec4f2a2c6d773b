"""HRM: the rule engine that arbitrates every trade plan (AGENT_04)."""

from ark_runtime.hrm.breakers import BreakerState
from ark_runtime.hrm.engine import Decision, RuleEngine, Violation, evaluate_check
from ark_runtime.hrm.ruleset import (
    DEFAULT_RULESET,
    BreakerConfig,
    Check,
    Rule,
    Ruleset,
    RulesetError,
    check_ruleset_file,
    load_ruleset,
    parse_ruleset,
)

__all__ = [
    "DEFAULT_RULESET",
    "BreakerConfig",
    "BreakerState",
    "Check",
    "Decision",
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
