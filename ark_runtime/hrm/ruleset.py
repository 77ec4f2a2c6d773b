"""Loading and validating `HRM_RULESET.yaml` (AGENT_04).

The file is checked against `ruleset.schema.json` before anything uses it; every problem is
reported with the id of the rule it belongs to, and one bad rule refuses the whole file
(a partly loaded ruleset would silently approve what the missing rule should reject).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import time
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError

__all__ = [
    "DEFAULT_RULESET",
    "RULESET_SCHEMA",
    "BreakerConfig",
    "Check",
    "ExposureLimits",
    "Rule",
    "Ruleset",
    "RulesetError",
    "check_ruleset_file",
    "load_ruleset",
    "parse_ruleset",
]

DEFAULT_RULESET = Path(__file__).with_name("HRM_RULESET.yaml")
RULESET_SCHEMA = Path(__file__).with_name("ruleset.schema.json")
SEVERITIES = ("critical", "error", "warning")
BLOCKING = frozenset({"critical", "error"})


class RulesetError(ValueError):
    """The ruleset is unusable. `problems` lists each one, prefixed with its rule id."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid HRM ruleset {source}:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Check:
    field: str
    operator: str
    value: Any = None
    case_sensitive: bool = False


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    message: str
    description: str = ""
    check: Check | None = None  # a simple rule
    when: tuple[Check, ...] = ()  # a conditional rule: when all hold, `then` must hold
    then: Check | None = None

    @property
    def conditional(self) -> bool:
        return bool(self.when)


@dataclass(frozen=True)
class BreakerConfig:
    daily_loss_limit: float | None = None
    consecutive_losses: int | None = None  # streak that shrinks sizes by size_factor
    size_factor: float = 0.5
    loss_streak_limit: int | None = None  # streak that trips the loss_streak breaker
    # Error-bus severity raised when each breaker trips (critical pauses upstream).
    daily_loss_severity: str = "error"
    loss_streak_severity: str = "warning"
    session_timezone: str = "UTC"
    session_reset: time = time(0, 0)

    def severity(self, breaker: str) -> str:
        return {"daily_loss": self.daily_loss_severity,
                "loss_streak": self.loss_streak_severity}[breaker]


@dataclass(frozen=True)
class ExposureLimits:
    """Open exposure, as fractions of the account, no approval may take past (None: none)."""

    per_symbol: float | None = None
    total: float | None = None


@dataclass(frozen=True)
class Ruleset:
    version: str
    strict_mode: bool
    rules: tuple[Rule, ...]
    breakers: BreakerConfig = field(default_factory=BreakerConfig)
    source: str = "<memory>"
    exposure: ExposureLimits = field(default_factory=ExposureLimits)

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads(RULESET_SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _rule_label(data: Any, index: int) -> str:
    rules = data.get("rules") if isinstance(data, dict) else None
    rule = rules[index] if isinstance(rules, list) and index < len(rules) else None
    if isinstance(rule, dict) and isinstance(rule.get("id"), str) and rule["id"]:
        return f"rule {rule['id']}"
    return f"rule #{index + 1} (no id)"


def _deepest(error: SchemaError) -> SchemaError:
    # if/then and $ref failures wrap the specific cause; report the most specific one.
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    return error


def _describe(data: Any, error: SchemaError) -> str:
    error = _deepest(error)
    path = list(error.absolute_path)
    if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
        where = _rule_label(data, path[1])
        rest = ".".join(str(p) for p in path[2:])
    else:
        where, rest = "ruleset", ".".join(str(p) for p in path)
    if error.validator == "not" and len(path) >= 2 and path[0] == "rules":
        message = "a conditional rule (when/then) must not also have field/operator/value"
        instance = error.instance
        if not isinstance(instance, dict):  # already reported by its type error
            message = f"{instance!r} is not of type 'object'"
        elif "then" in instance and "when" not in instance:
            message = "'then' is only allowed together with 'when'"
    else:
        message = error.message
    return f"{where}: {rest + ': ' if rest else ''}{message}"


def _check(data: dict[str, Any]) -> Check:
    return Check(
        field=data["field"],
        operator=data["operator"],
        value=data.get("value", True if data["operator"] == "exists" else None),
        case_sensitive=bool(data.get("case_sensitive", False)),
    )


def parse_ruleset(data: Any, source: str = "<memory>") -> Ruleset:
    """Validate an already-parsed document and build the `Ruleset`.

    Any malformed document raises RulesetError, never TypeError/KeyError: the schema is the
    first line, and a slip past it (a schema/loader mismatch) is still reported as invalid."""
    try:
        return _parse(data, source)
    except RulesetError:
        raise
    except (TypeError, KeyError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        raise RulesetError(source, [f"ruleset: malformed document ({type(exc).__name__}: "
                                    f"{str(exc)[:200]})"]) from None


def _parse(data: Any, source: str) -> Ruleset:
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.path)))
    problems = list(dict.fromkeys(_describe(data, e) for e in errors))
    if isinstance(data, dict) and isinstance(data.get("rules"), list):
        seen: set[str] = set()
        for item in data["rules"]:
            rule_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(rule_id, str):
                if rule_id in seen:
                    problems.append(f"rule {rule_id}: duplicate rule id")
                seen.add(rule_id)
    if problems:
        raise RulesetError(source, problems)

    rules = []
    for item in data["rules"]:
        common = dict(
            id=item["id"],
            severity=item["severity"],
            message=item["message"],
            description=item.get("description", ""),
        )
        if "when" in item:
            rules.append(
                Rule(
                    **common, when=tuple(_check(c) for c in item["when"]), then=_check(item["then"])
                )
            )
        else:
            rules.append(Rule(**common, check=_check(item)))
    cb = data.get("circuit_breakers") or {}
    zone = cb.get("session_timezone", "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RulesetError(source, [f"ruleset: circuit_breakers.session_timezone: unknown time "
                                    f"zone {zone!r} (use an IANA name such as "
                                    "America/New_York)"]) from None
    hour, minute = (int(x) for x in cb.get("session_reset", "00:00").split(":"))
    severity = cb.get("severity") or {}
    breakers = BreakerConfig(
        daily_loss_limit=cb.get("daily_loss_limit"),
        consecutive_losses=cb.get("consecutive_losses"),
        size_factor=cb.get("size_factor", 0.5),
        loss_streak_limit=cb.get("loss_streak_limit"),
        daily_loss_severity=severity.get("daily_loss", "error"),
        loss_streak_severity=severity.get("loss_streak", "warning"),
        session_timezone=zone,
        session_reset=time(hour, minute),
    )
    limits = data.get("exposure_limits") or {}
    exposure = ExposureLimits(per_symbol=limits.get("per_symbol"), total=limits.get("total"))
    return Ruleset(
        version=data["version"],
        strict_mode=data["strict_mode"],
        rules=tuple(rules),
        breakers=breakers,
        source=source,
        exposure=exposure,
    )


def load_ruleset(path: str | Path | None = None) -> Ruleset:
    """Load and validate a ruleset file (the packaged one by default)."""
    path = Path(path) if path is not None else DEFAULT_RULESET
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesetError(str(path), [f"cannot read file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise RulesetError(str(path), [f"not UTF-8 text: {exc.reason} at byte {exc.start}"]) \
            from None
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise RulesetError(str(path), [f"not valid YAML: {exc}"]) from None
    return parse_ruleset(data, str(path))


def check_ruleset_file(path: str | Path) -> list[str]:
    """Problems with a ruleset file, for the deploy's validate step; empty means usable."""
    try:
        load_ruleset(path)
    except RulesetError as exc:
        return exc.problems
    return []
