"""SEC_01: validate env files against `env.schema.yaml` (`ark env check PATH`).

Every problem names the variable and why it is wrong. A sensitive variable's value is never
part of any message: not echoed, not quoted, not in a repr. Values of non-sensitive
variables are quoted (shortened) because that is what makes the message useful.
"""

from __future__ import annotations

import argparse
import fnmatch
import ipaddress
import re
import stat
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonschema import Draft202012Validator

from ark_runtime.validators import ValidationError, validate_url

__all__ = [
    "ENV_SCHEMA",
    "EnvSchema",
    "EnvSchemaError",
    "Problem",
    "check_env",
    "check_env_file",
    "domains_for_unit",
    "load_env_schema",
    "parse_env_file",
    "register",
]

ENV_SCHEMA = Path(__file__).resolve().parents[1] / "env.schema.yaml"
TYPES = ("str", "int", "port", "bool", "enum", "host", "url", "path")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*")
_HOST_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)

_VAR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["domain", "type", "required", "sensitive", "description", "default"],
    "properties": {
        "domain": {"type": "string"},
        "type": {"enum": list(TYPES)},
        "required": {"type": "boolean"},
        "required_in": {"type": "array", "items": {"type": "string"}},
        "required_if": {"type": "object", "additionalProperties": {"type": "string"}},
        "sensitive": {"type": "boolean"},
        "description": {"type": "string", "minLength": 1},
        "default": {"type": ["string", "integer", "boolean", "null"]},
        "values": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "schemes": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "min_length": {"type": "integer", "minimum": 1},
        "pattern": {"type": "string"},
        "min": {"type": "integer"},
        "max": {"type": "integer"},
        "const": {"type": ["boolean", "string", "integer"]},
    },
    "allOf": [
        {"if": {"properties": {"type": {"const": "enum"}}}, "then": {"required": ["values"]}}
    ],
}
_META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "domains", "units", "variables"],
    "properties": {
        "version": {"type": "integer"},
        "domains": {"type": "object", "additionalProperties": {"type": "string"}},
        "units": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "variables": {"type": "object", "additionalProperties": _VAR_SCHEMA},
        "patterns": {"type": "object", "additionalProperties": _VAR_SCHEMA},
    },
}


class EnvSchemaError(ValueError):
    """The env schema itself is broken."""


@dataclass(frozen=True)
class Problem:
    variable: str  # the variable name, or "" for a file-level problem
    message: str
    severity: Literal["error", "warning"] = "error"
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        name = f"{self.variable}: " if self.variable else ""
        return f"{self.severity}: {where}{name}{self.message}"


@dataclass(frozen=True)
class EnvSchema:
    domains: dict[str, str]
    units: dict[str, list[str]]
    variables: dict[str, dict[str, Any]]
    patterns: dict[str, dict[str, Any]]

    def spec_for(self, name: str) -> dict[str, Any] | None:
        if name in self.variables:
            return self.variables[name]
        for pattern, spec in self.patterns.items():
            if fnmatch.fnmatchcase(name, pattern):
                return spec
        return None

    def sensitive_names(self) -> set[str]:
        return {n for n, s in self.variables.items() if s["sensitive"]}


@cache
def _load_cached(path: Path) -> EnvSchema:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EnvSchemaError(f"{path}: cannot load env schema: {exc}") from None
    errors = list(Draft202012Validator(_META_SCHEMA).iter_errors(data))
    problems = [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]
    if not problems:
        for name, spec in {**data["variables"], **data.get("patterns", {})}.items():
            if spec["domain"] not in data["domains"]:
                problems.append(f"variables.{name}: unknown domain {spec['domain']!r}")
        for unit, domains in data["units"].items():
            problems += [
                f"units.{unit}: unknown domain {d!r}" for d in domains if d not in data["domains"]
            ]
    if problems:
        raise EnvSchemaError(f"{path}: invalid env schema: " + "; ".join(problems))
    return EnvSchema(data["domains"], data["units"], data["variables"], data.get("patterns", {}))


def load_env_schema(path: str | Path | None = None) -> EnvSchema:
    return _load_cached(Path(path) if path is not None else ENV_SCHEMA)


def domains_for_unit(unit: str, schema: EnvSchema | None = None) -> list[str]:
    """The credential domains a unit loads: 'api', 'kyle', 'joey', 'kenny', 'hrm' (an
    'ark-agent@NAME' instance name is accepted too)."""
    schema = schema or load_env_schema()
    name = unit.removeprefix("ark-agent@").removeprefix("ark-").removesuffix(".service")
    if name not in schema.units:
        raise KeyError(f"unknown unit {unit!r}: expected one of {', '.join(schema.units)}")
    return list(schema.units[name])


def parse_env_file(text: str) -> tuple[dict[str, tuple[str, int]], list[Problem]]:
    """systemd EnvironmentFile syntax: KEY=VALUE, '#'/';' comments, optional quotes.
    Returns {name: (value, line)} and syntax problems (which never quote the line)."""
    values: dict[str, tuple[str, int]] = {}
    problems: list[Problem] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME_RE.fullmatch(name):
            shown = name if _NAME_RE.fullmatch(name) else ""
            problems.append(
                Problem(
                    shown,
                    "not a KEY=VALUE line (names are UPPER_SNAKE_CASE; no 'export')",
                    line=lineno,
                )
            )
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if name in values:
            problems.append(
                Problem(name, f"set again (line {values[name][1]} is ignored)", "warning", lineno)
            )
        values[name] = (value, lineno)
    return values, problems


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _check_value(name: str, value: str, spec: dict[str, Any]) -> str | None:
    """Why `value` is invalid for `spec`, or None. Only quotes the value when not sensitive."""
    sensitive = spec["sensitive"]
    shown = "" if sensitive else f" {_show(value)}"
    kind = spec["type"]
    if kind == "bool":
        lowered = value.lower()
        if lowered not in _TRUE | _FALSE:
            return f"value{shown} is not a boolean (true/false/1/0/yes/no/on/off)"
        if "const" in spec and (lowered in _TRUE) != spec["const"]:
            return f"must be {str(spec['const']).lower()}"
        return None
    if kind in ("int", "port"):
        if not re.fullmatch(r"-?[0-9]{1,10}", value):
            return f"value{shown} is not an integer"
        number = int(value)
        lo, hi = (1, 65535) if kind == "port" else (spec.get("min"), spec.get("max"))
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            return f"value{shown} is out of range {lo}..{hi}"
        return None
    if kind == "enum":
        if value not in spec["values"]:
            return f"value{shown} is not one of {', '.join(spec['values'])}"
        return None
    if kind == "host":
        try:
            ipaddress.ip_address(value)
            return None
        except ValueError:
            pass
        return None if _HOST_RE.fullmatch(value) else f"value{shown} is not a host name or IP"
    if kind == "path":
        if not value.startswith("/") or "\x00" in value or ".." in value.split("/"):
            return f"value{shown} is not an absolute path without '..'"
        return None
    if kind == "url":
        try:
            validate_url(value, allow_credentials=sensitive)
        except ValidationError as exc:
            # validate_url never echoes credentials, but a sensitive URL's text stays out.
            return "is not a valid URL" if sensitive else f"value{shown}: {exc}"
        scheme = value.split(":", 1)[0].lower()
        if "schemes" in spec and scheme not in spec["schemes"]:
            return f"URL scheme must be one of {', '.join(spec['schemes'])}"
        return None
    # str
    if "min_length" in spec and len(value) < spec["min_length"]:
        return f"is shorter than {spec['min_length']} characters"
    if "pattern" in spec and not re.fullmatch(spec["pattern"], value):
        return (
            f"value{shown} does not have the expected format"
            if not sensitive
            else ("does not have the expected format")
        )
    if "const" in spec and value != str(spec["const"]):
        return f"must be {spec['const']}"
    return None


def check_env(
    values: dict[str, tuple[str, int]] | dict[str, str],
    schema: EnvSchema | None = None,
    *,
    domains: list[str] | None = None,
    environment: str | None = None,
) -> list[Problem]:
    """Check parsed values. `domains` limits the file to those credential domains (a variable
    of another domain is an error: each unit must only get its own secrets). `environment`
    defaults to the file's ARK_ENVIRONMENT, else production (strictest, so checks fail closed)."""
    schema = schema or load_env_schema()
    items = {k: (v if isinstance(v, tuple) else (v, None)) for k, v in values.items()}
    problems: list[Problem] = []
    if domains is not None:
        unknown = [d for d in domains if d not in schema.domains]
        if unknown:
            raise KeyError(f"unknown domain(s) {', '.join(unknown)}")
    env = environment or items.get("ARK_ENVIRONMENT", ("production", None))[0]

    for name, (value, line) in items.items():
        spec = schema.spec_for(name)
        if spec is None:
            problems.append(Problem(name, "is not in the env schema (typo?)", "warning", line))
            continue
        if domains is not None and spec["domain"] not in domains:
            problems.append(
                Problem(
                    name,
                    f"belongs to domain {spec['domain']}, not allowed in a file for "
                    f"{', '.join(domains)}",
                    "error",
                    line,
                )
            )
            continue
        if value == "":
            continue  # empty = unset; the required check below reports it if needed
        why = _check_value(name, value, spec)
        if why:
            problems.append(Problem(name, why, "error", line))

    for name, spec in schema.variables.items():
        if domains is not None and spec["domain"] not in domains:
            continue
        if items.get(name, ("", None))[0] != "":
            continue
        reason = None
        if spec["required"]:
            reason = "is required"
        elif env in spec.get("required_in", []):
            reason = f"is required when ARK_ENVIRONMENT={env}"
        else:
            for other, wanted in spec.get("required_if", {}).items():
                if items.get(other, (None, None))[0] == wanted:
                    reason = f"is required when {other}={wanted}"
        if reason:
            problems.append(Problem(name, f"{reason}: {spec['description']}"))
    return problems


def check_env_file(
    path: str | Path,
    schema: EnvSchema | None = None,
    *,
    domains: list[str] | None = None,
    environment: str | None = None,
    check_mode: bool = True,
) -> list[Problem]:
    """All problems with an env file; errors make it invalid, warnings do not."""
    path = Path(path)
    schema = schema or load_env_schema()
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        return [Problem("", f"cannot read {path}: {reason}")]
    values, problems = parse_env_file(text)
    problems += check_env(values, schema, domains=domains, environment=environment)
    has_secret = any(
        (spec := schema.spec_for(n)) is not None and spec["sensitive"] and v
        for n, (v, _) in values.items()
    )
    if check_mode and has_secret and stat.S_IMODE(mode) & 0o077:
        problems.append(
            Problem(
                "",
                f"{path} holds secrets but is mode {stat.S_IMODE(mode):04o}; run chmod 600 {path}",
            )
        )
    # File order, file-level problems last.
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


# --- `ark env ...` --------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        domains = args.domain or (domains_for_unit(args.unit) if args.unit else None)
        problems = check_env_file(
            args.path,
            domains=domains,
            environment=args.environment,
            check_mode=not args.no_mode_check,
        )
    except (KeyError, EnvSchemaError) as exc:
        print(f"ark env check: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"{args.path}: {problem}", file=sys.stderr)
    errors = sum(p.severity == "error" for p in problems)
    if errors:
        print(f"{args.path}: invalid ({errors} error(s))", file=sys.stderr)
        return 2
    print(f"{args.path}: ok")
    return 0


def _cmd_domains(args: argparse.Namespace) -> int:
    try:
        print(" ".join(domains_for_unit(args.unit)))
    except KeyError as exc:
        print(f"ark env domains: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    env = sub.add_parser("env", help="check env files against the typed env schema (SEC_01)")
    env_sub = env.add_subparsers(dest="env_command", required=True, metavar="ACTION")
    check = env_sub.add_parser("check", help="validate an env file; exit 2 when invalid")
    check.add_argument("path")
    check.add_argument("--domain", action="append", help="only these domains are allowed")
    check.add_argument("--unit", help="allow the domains of this unit (api, kyle, kenny, ...)")
    check.add_argument("--environment", help="override ARK_ENVIRONMENT for required_in checks")
    check.add_argument("--no-mode-check", action="store_true", help="skip the 0600 check")
    check.set_defaults(func=_cmd_check)
    domains = env_sub.add_parser("domains", help="print the credential domains of a unit")
    domains.add_argument("unit")
    domains.set_defaults(func=_cmd_domains)
