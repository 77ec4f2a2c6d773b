"""SEC_01: validate env files with the runtime's own settings models (`ark env check PATH`).

The variables, types and rules are the ones the runtime reads through `ark_runtime.settings`
(declared once in `settings/model.py`), so a file that passes here is one the units accept.
Every problem names the variable and why it is wrong; an unknown ARK_* variable is an error
(a typo would otherwise silently fall back to a default). A sensitive variable's value is
never part of any message. Values of non-sensitive variables are quoted (shortened) because
that is what makes the message useful.

Exit codes: 0 valid, 65 (DATAERR) invalid, 64 bad command line (unknown unit or domain). The
checked file is this command's input data; a *service* refusing its configuration exits 78.
"""

from __future__ import annotations

import argparse
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ark_runtime.exitcodes import ArkArgumentParser, ExitCode
from ark_runtime.settings import DOMAINS, UNITS, VARIABLES, check_values, spec_for
from ark_runtime.settings.schema import PACKAGE_SCHEMA

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

# The generated schema file (the deploy reads it); kept here for callers that hash it.
ENV_SCHEMA = PACKAGE_SCHEMA
_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*")
REDIS_USER_DIR = "redis"  # <env dir>/redis/<user>.env: each unit's own Redis user (SEC_01)


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


# -- compatibility view for host/heal/ and host/dr/ (TODO(lead): use ark_runtime.settings)


class EnvSchemaError(ValueError):
    """Kept for callers; the schema is code now, so loading it cannot fail."""


@dataclass(frozen=True)
class EnvSchema:
    domains: dict[str, str]
    units: dict[str, list[str]]

    def spec_for(self, name: str) -> dict[str, Any] | None:
        var = spec_for(name)
        if var is None:
            return None
        return {"domain": var.domain, "type": var.kind, "sensitive": var.sensitive,
                "required": var.required, "description": var.description}

    def sensitive_names(self) -> set[str]:
        return {name for name, var in VARIABLES.items() if var.sensitive}


def load_env_schema(path: str | Path | None = None) -> EnvSchema:
    """The declaration as the old schema object (`path` is ignored: there is one source)."""
    return EnvSchema(dict(DOMAINS), {u: list(d) for u, d in UNITS.items()})


def domains_for_unit(unit: str) -> list[str]:
    """The credential domains a unit loads: 'api', 'kyle', 'joey', 'kenny', 'hrm', 'heal',
    'snapshot' (an 'ark-agent@NAME' instance name is accepted too)."""
    name = unit.removeprefix("ark-agent@").removeprefix("ark-").removesuffix(".service")
    if name not in UNITS:
        raise KeyError(f"unknown unit {unit!r}: expected one of {', '.join(UNITS)}")
    return list(UNITS[name])


def parse_env_file(text: str) -> tuple[dict[str, tuple[str, int]], list[Problem]]:
    """systemd EnvironmentFile syntax: KEY=VALUE, '#'/';' comments, optional quotes.
    Returns {name: (value, line)} and syntax problems (which never quote the line)."""
    values: dict[str, tuple[str, int]] = {}
    problems: list[Problem] = []
    # Lines end at "\n" only, as for systemd: str.splitlines() would also split at form feeds
    # and other separators inside a value, and report a piece of a secret as a "name".
    for lineno, raw in enumerate(text.split("\n"), start=1):
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


def _name_problems(name: str, line: int | None, domains: list[str] | None) -> Problem | None:
    spec = spec_for(name)
    if spec is None:
        if name.startswith("ARK_"):
            return Problem(name, "is not a variable ARK knows (typo? see ark_runtime/"
                           "env.schema.yaml)", "error", line)
        return Problem(name, "is not in the env schema (ignored by ARK)", "warning", line)
    if domains is not None and spec.domain not in domains:
        return Problem(name, f"belongs to domain {spec.domain}, not allowed in a file for "
                       f"{', '.join(domains)}", "error", line)
    return None


def _missing(items: dict[str, tuple[str, int | None]], domains: list[str] | None,
             environment: str) -> list[Problem]:
    problems = []
    for name, var in VARIABLES.items():
        if domains is not None and var.domain not in domains:
            continue
        if items.get(name, ("", None))[0] != "":
            continue
        reason = None
        if var.required:
            reason = "is required"
        elif environment in var.required_in:
            reason = f"is required when ARK_ENVIRONMENT={environment}"
        else:
            for other, wanted in var.required_if.items():
                if items.get(other, (None, None))[0] == wanted:
                    reason = f"is required when {other}={wanted}"
        if reason:
            problems.append(Problem(name, f"{reason}: {var.description}"))
    return problems


def check_env(
    values: dict[str, tuple[str, int]] | dict[str, str],
    *,
    domains: list[str] | None = None,
    environment: str | None = None,
    overlay: bool = False,
) -> list[Problem]:
    """Check parsed values. `domains` limits the file to those credential domains (a variable
    of another domain is an error: each unit must only get its own secrets). `environment`
    defaults to the file's ARK_ENVIRONMENT, else production (strictest, so checks fail closed)."""
    items = {k: (v if isinstance(v, tuple) else (v, None)) for k, v in values.items()}
    if domains is not None:
        unknown = [d for d in domains if d not in DOMAINS]
        if unknown:
            raise KeyError(f"unknown domain(s) {', '.join(unknown)}")
    env = environment or items.get("ARK_ENVIRONMENT", ("production", None))[0]
    problems: list[Problem] = []
    allowed: dict[str, str] = {}
    for name, (value, line) in items.items():
        refused = _name_problems(name, line, domains)
        if refused:
            problems.append(refused)
        if refused is None or refused.severity == "warning":
            allowed[name] = value
    problems += [Problem(name, why, "error", items[name][1])
                 for name, why in check_values(allowed)]
    # An overlay (a unit's Redis user file, loaded after its domain files) holds a few
    # values only: each is checked, what it leaves out is the domain files' business.
    return problems + ([] if overlay else _missing(items, domains, env))


def check_env_file(
    path: str | Path,
    schema: EnvSchema | None = None,  # ignored: kept for callers that pass it
    *,
    domains: list[str] | None = None,
    environment: str | None = None,
    check_mode: bool = True,
    overlay: bool = False,
) -> list[Problem]:
    """All problems with an env file; errors make it invalid, warnings do not."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        return [Problem("", f"cannot read {path}: {reason}")]
    values, problems = parse_env_file(text)
    problems += check_env(values, domains=domains, environment=environment, overlay=overlay)
    has_secret = any(
        (spec := spec_for(n)) is not None and spec.sensitive and v
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
            overlay=args.overlay,
        )
    except KeyError as exc:
        print(f"ark env check: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return ExitCode.USAGE
    for problem in problems:
        print(f"{args.path}: {problem}", file=sys.stderr)
    errors = sum(p.severity == "error" for p in problems)
    if errors:
        print(f"{args.path}: invalid ({errors} error(s))", file=sys.stderr)
        return ExitCode.DATAERR
    print(f"{args.path}: ok")
    return ExitCode.OK


def _cmd_domains(args: argparse.Namespace) -> int:
    try:
        print(" ".join(domains_for_unit(args.unit)))
    except KeyError as exc:
        print(f"ark env domains: {exc.args[0]}", file=sys.stderr)
        return ExitCode.USAGE
    return ExitCode.OK


def _cmd_set(args: argparse.Namespace) -> int:
    """Issue 22 §3: one variable set in place from a file (never argv), checked as the role's
    `validate:` checks the whole file, for the file's own domain (api.env -> api)."""
    from ark_runtime.host.envfile import EnvFileError, set_variable

    path = Path(args.path)
    # A unit's own Redis user file (redis/<user>.env) is an overlay of the infrastructure
    # domain: `secrets.rotate redis` sets its password in place.
    overlay = path.parent.name == REDIS_USER_DIR
    domain = "infrastructure" if overlay else path.name.removesuffix(".env")
    if domain not in DOMAINS or not path.is_file() or path.suffix != ".env":
        print(f"ark env set: {path} is not an env file of a credential domain "
              f"({', '.join(d + '.env' for d in DOMAINS)}) or a unit's Redis user "
              f"({REDIS_USER_DIR}/USER.env)", file=sys.stderr)
        return ExitCode.USAGE
    spec = spec_for(args.name)
    if spec is None or spec.domain != domain:
        print(f"ark env set: {args.name[:60]!r} is not a variable of the {domain} domain",
              file=sys.stderr)
        return ExitCode.USAGE
    try:
        value = Path(args.value_file).read_text(encoding="utf-8").rstrip("\n")
        set_variable(path, args.name, value, lambda tmp: [
            str(p) for p in check_env_file(tmp, domains=[domain], check_mode=False,
                                           overlay=overlay)
            if p.severity == "error"])
    except (OSError, UnicodeDecodeError) as exc:
        print(f"ark env set: {getattr(exc, 'filename', None) or args.value_file}: cannot read "
              "the value", file=sys.stderr)
        return ExitCode.DATAERR
    except EnvFileError as exc:
        print(f"ark env set: {exc}", file=sys.stderr)
        return ExitCode.DATAERR
    print(f"{path}: {args.name} set")
    return ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    env = sub.add_parser("env", help="check env files against the typed settings (SEC_01)")
    env_sub = env.add_subparsers(dest="env_command", required=True, metavar="ACTION",
                                 parser_class=ArkArgumentParser)
    check = env_sub.add_parser("check", help="validate an env file; exit 65 when invalid")
    check.add_argument("path")
    check.add_argument("--domain", action="append", choices=list(DOMAINS),
                       help="only these domains are allowed")
    check.add_argument("--unit", help="allow the domains of this unit (api, kyle, kenny, ...)")
    check.add_argument("--environment", choices=VARIABLES["ARK_ENVIRONMENT"].rules["values"],
                       help="override ARK_ENVIRONMENT for required_in checks")
    check.add_argument("--no-mode-check", action="store_true", help="skip the 0600 check")
    check.add_argument("--overlay", action="store_true",
                       help="a file loaded over the domain files (a unit's Redis user): check "
                            "its values, not the required variables it leaves out")
    check.set_defaults(func=_cmd_check)
    setter = env_sub.add_parser("set", help="set one variable in a rendered env file, its "
                                             "value read from a file (never the command line)")
    setter.add_argument("path")
    setter.add_argument("name")
    setter.add_argument("--value-file", required=True, help="file holding the value (one line)")
    setter.set_defaults(func=_cmd_set)
    domains = env_sub.add_parser("domains", help="print the credential domains of a unit")
    domains.add_argument("unit")
    domains.set_defaults(func=_cmd_domains)
