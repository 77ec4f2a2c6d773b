"""The one reader of the process environment (SEC_01).

    from ark_runtime.settings import load
    cfg = load()              # typed ArkSettings from this process's environment
    cfg = load({"ARK_...": "..."})  # the same checks on any mapping (tests, env files)

Every variable is declared once in `model.ArkSettings`; `catalog.VARIABLES` describes them.
`load()` builds it through pydantic-settings' own sources: the environment and, under systemd,
the unit's credentials directory ($CREDENTIALS_DIRECTORY, LoadCredential=NAME) as its
secrets-dir source. A bad value raises `SettingsError`, whose message names each variable and
why it is wrong and never contains a sensitive value.

Nothing outside this package touches the process environment (a unit test parses every
module for it): code that needs raw values gets the declared variables that are set
(`declared()`), systemd's protocol variables (`systemd_var()`), the login name
(`login_name()`) or an environment for a child process (`child_environment()`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ark_runtime.settings.catalog import FEATURE_FLAG, VARIABLES, Variable, default_of, spec_for
from ark_runtime.settings.model import DOMAINS, UNITS, ArkSettings

__all__ = [
    "DOMAINS",
    "UNITS",
    "VARIABLES",
    "ArkSettings",
    "SettingsError",
    "Variable",
    "check_values",
    "child_environment",
    "credentials_dir",
    "declared",
    "default_of",
    "environment_where",
    "get",
    "login_name",
    "load",
    "spec_for",
    "systemd_var",
]

# Set by systemd for the service itself (sd_notify(3), the watchdog, ExecStopPost); not ours
# to declare or to put in env files, but read here so there is one reader.
SYSTEMD_VARIABLES = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                               "SERVICE_RESULT", "CREDENTIALS_DIRECTORY"})
# Who is logged in (sudo(8), login(1)): recorded as "who" when ARK_ACTOR is not set.
LOGIN_VARIABLES = ("SUDO_USER", "LOGNAME", "USER")
_BOOL = TypeAdapter(bool)


class SettingsError(ValueError):
    """Bad settings. `problems` is [(variable, why)]; no sensitive value is in any of it."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {why}" for name, why in problems))


def declared(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The declared variables (and ARK_FEATURE_* flags) set in `env` (default: this process's
    environment), as raw text: for path helpers and the checks that judge one value alone."""
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if v != "" and spec_for(k) is not None}


def environment_where(wanted: Callable[[str], bool]) -> dict[str, str]:
    """The variables of this process's environment whose name `wanted` accepts (redaction
    asks for the secret-named ones, declared or not)."""
    return {k: v for k, v in os.environ.items() if v != "" and wanted(k)}


def login_name() -> str | None:
    """The person behind sudo, else the login name (sudo(8), login(1))."""
    return next((os.environ[v] for v in LOGIN_VARIABLES if os.environ.get(v)), None)


def child_environment(drop: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment for a child it starts (systemctl, ...), without `drop`."""
    return {k: v for k, v in os.environ.items() if k not in drop}


def credentials_dir() -> str | None:
    """systemd's credentials directory of this unit, when it has one (LoadCredential=)."""
    path = systemd_var("CREDENTIALS_DIRECTORY")
    return path if path and os.path.isdir(path) else None


def systemd_var(name: str) -> str | None:
    """A variable systemd sets for the running service (NOTIFY_SOCKET, WATCHDOG_USEC, ...)."""
    if name not in SYSTEMD_VARIABLES:
        raise KeyError(f"{name} is not a systemd service variable; declare it in ArkSettings")
    return os.environ.get(name)


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _range(var: Variable) -> str | None:
    lo, hi = var.rules.get("min"), var.rules.get("max")
    if lo is None or hi is None or var.rules.get("min_exclusive"):
        return None
    return f"is out of range {lo}..{hi}"


_REASONS = {
    "int_parsing": "is not an integer", "int_from_float": "is not an integer",
    "int_type": "is not an integer", "int_parsing_size": "is not an integer in range",
    "float_parsing": "is not a number",
    "float_type": "is not a number", "finite_number": "is not a finite number",
    "bool_parsing": "is not a boolean (true/false/1/0/yes/no/on/off)",
    "bool_type": "is not a boolean (true/false/1/0/yes/no/on/off)",
    "string_pattern_mismatch": "does not have the expected format",
    "string_type": "is not text", "string_unicode": "is not valid text",
}


def _reason(error: Any, var: Variable | None) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _REASONS:
        return _REASONS[kind]
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bounded = _range(var) if var else None
        if bounded:
            return bounded
        sign = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">",
                "less_than": "<"}[kind]
        return f"must be {sign} {next(iter(ctx.values()))}"
    if kind == "literal_error":
        return f"is not one of {', '.join(map(str, var.rules['values']))}" if var else "is invalid"
    if kind == "string_too_short":
        return f"is shorter than {ctx['min_length']} characters"
    if kind == "string_too_long":
        return f"is longer than {ctx['max_length']} characters"
    if kind == "value_error":
        return str(ctx.get("error", "is invalid"))
    return "is invalid"  # never pydantic's own text: some types echo the input


def _why(reason: str, value: str | None, sensitive: bool) -> str:
    if sensitive or value is None or reason.startswith(("URL", "is shorter", "is longer")):
        return reason
    return f"value {_show(value)} {reason}"


def _problems(exc: ValidationError, raw: Mapping[str, str]) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        name = str(error["loc"][0]) if error["loc"] else "(settings)"
        var = VARIABLES.get(name)
        problems.append((name, _why(_reason(error, var), raw.get(name),
                                    var is None or var.sensitive)))
    return problems


def check_values(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """Problems [(variable, why)] with the declared variables set in `values` (empty = unset);
    undeclared names are the caller's concern. The live environment and env files alike."""
    present = {k: v for k, v in values.items() if v != "" and spec_for(k) is not None}
    problems: list[tuple[str, str]] = []
    try:
        # The mapping alone, never merged with the process's environment.
        ArkSettings.of_mapping({k: v for k, v in present.items() if k in VARIABLES})
    except ValidationError as exc:
        problems += _problems(exc, present)
    for name, value in present.items():
        if name not in VARIABLES:  # an ARK_FEATURE_* flag nobody declared by name
            try:
                _BOOL.validate_python(value)
            except ValidationError as exc:
                reason = _reason(exc.errors(include_input=False)[0], FEATURE_FLAG)
                problems.append((name, _why(reason, value, False)))
    return problems


def get(name: str, env: Mapping[str, str] | None = None) -> Any:
    """One declared variable, typed, from `env` (default: this process's environment); its
    declared default when unset. Raises SettingsError naming it when its value is bad, without
    judging the other variables (a host command must not fail on a setting it does not use)."""
    var = VARIABLES[name]
    values = declared(env)
    return getattr(load({name: values.get(name, "")}), var.field)


def load(env: Mapping[str, str] | None = None) -> ArkSettings:
    """Typed settings from `env`, or (default) from this process's environment and its
    systemd credentials through pydantic-settings' sources. An empty value counts as unset.
    Raises SettingsError naming every bad variable."""
    raw = declared(env)
    problems = check_values(raw)
    if problems:
        raise SettingsError(problems)
    if env is not None:
        return ArkSettings.of_mapping({k: v for k, v in raw.items() if k in VARIABLES})
    try:
        return ArkSettings(_secrets_dir=credentials_dir())
    except ValidationError as exc:  # a credential file's value (the env was checked above)
        raise SettingsError(_problems(exc, {})) from None
