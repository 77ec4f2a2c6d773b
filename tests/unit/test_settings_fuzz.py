"""SEC_01 boundary, property-based: whatever an env file or the environment holds (wrong
types, out-of-range ports, unknown ARK_ variables, huge strings, unicode, control
characters), the settings layer and `ark env check` either accept it or name the variable,
never crash, and never echo a sensitive value."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ark_runtime.host.envcheck import check_env, check_env_file
from ark_runtime.settings import VARIABLES, SettingsError, check_values, load

pytestmark = pytest.mark.requirement("SEC_01")

NAMES = sorted(VARIABLES)
SENSITIVE = sorted(n for n, v in VARIABLES.items() if v.sensitive)
PORTS = sorted(n for n, v in VARIABLES.items() if v.kind == "port")
NUMBERS = sorted(n for n, v in VARIABLES.items() if v.kind in ("int", "float", "port"))
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# What an env file line can carry: anything but NUL and a line break.
env_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\n\r"),
                   max_size=200)
huge = st.integers(5_000, 20_000).map(lambda n: "9" * n)
values = st.one_of(env_text, huge, st.sampled_from(["", " ", "-1", "0", "65536", "1e999", "nan",
                                                     "inf", "true", "∞", "٣", "0x10", "1_000"]))


def _named(problems: list[tuple[str, str]], name: str) -> bool:
    return any(p[0] == name for p in problems)


@FUZZ
@given(name=st.sampled_from(NAMES), value=values)
def test_any_value_is_accepted_or_named(name: str, value: str) -> None:
    problems = check_values({name: value})
    assert all(p[0] == name for p in problems)
    try:
        cfg = load({name: value})
    except SettingsError as exc:
        assert problems and exc.problems == problems
        assert str(exc).startswith(f"{name}: ")
    else:
        assert not problems
        assert cfg is not None


@FUZZ
@given(name=st.sampled_from(PORTS),
       port=st.one_of(st.integers(max_value=0), st.integers(min_value=65536)))
def test_out_of_range_ports_are_refused(name: str, port: int) -> None:
    problems = check_values({name: str(port)})
    assert _named(problems, name)
    assert "out of range 1..65535" in problems[0][1] or "not an integer" in problems[0][1]


@FUZZ
@given(name=st.sampled_from(NUMBERS),
       junk=st.text(string.ascii_letters + "!@#$%^&*()", min_size=1, max_size=30))
def test_non_numbers_are_refused(name: str, junk: str) -> None:
    assume(junk.lower() not in ("inf", "infinity", "nan"))
    problems = check_values({name: junk})
    assert _named(problems, name)


@FUZZ
@given(name=st.sampled_from(SENSITIVE), secret=env_text.map(lambda s: f"zq{s}qz"),
       padding=st.sampled_from(["", "x" * 5000]))
def test_sensitive_values_never_appear_in_errors(name: str, secret: str, padding: str) -> None:
    # zq..qz: a marker no message contains, so a hit is the value and not a coincidence
    value = secret + padding
    problems = check_values({name: value})
    for _name, why in problems:
        assert secret not in why and secret[:6] not in why
    try:
        load({name: value})
    except SettingsError as exc:
        assert secret not in str(exc) and secret not in repr(exc)


@FUZZ
@given(suffix=st.text(string.ascii_uppercase + string.digits + "_", min_size=1, max_size=40),
       value=env_text.map(lambda s: f"zq{s}qz"))
def test_unknown_ark_variables_are_errors_naming_them(suffix: str, value: str) -> None:
    # zq..qz: a marker no message contains (a bare "var" matched the word "variable")
    name = f"ARK_{suffix}"
    assume(name not in VARIABLES and not name.startswith("ARK_FEATURE_"))
    problems = check_env({"ARK_ENVIRONMENT": "development", name: value})
    assert [(p.variable, p.severity) for p in problems] == [(name, "error")]
    assert value not in problems[0].message


@FUZZ
@given(lines=st.lists(st.tuples(st.sampled_from([*NAMES, "ARK_BOGUS", "PATH", "lower"]),
                                values), max_size=12))
def test_generated_env_files_never_crash_the_checker(tmp_path: Path,
                                                     lines: list[tuple[str, str]]) -> None:
    path = tmp_path / "fuzz.env"
    # zq..qz around secrets: a marker no message contains, so a hit is the value itself
    # (a bare generated secret like "war" would match the word "warning").
    lines = [(n, f"zq{v}qz" if n in SENSITIVE else v) for n, v in lines]
    path.write_text("".join(f"{name}={value}\n" for name, value in lines), encoding="utf-8")
    os.chmod(path, 0o600)
    problems = check_env_file(path, environment="development")
    written = {name: value.strip() for name, value in lines}  # the last one counts
    for problem in problems:
        assert problem.variable == "" or problem.variable in written or (
            problem.variable in VARIABLES)  # a required one reported missing
        secret = written.get(problem.variable, "") if problem.variable in SENSITIVE else ""
        if len(secret) >= 3:
            assert secret not in str(problem)


def test_a_form_feed_in_a_secret_does_not_split_the_line(tmp_path: Path) -> None:
    # Found by the test above: str.splitlines() cut a value at "\x0c" and printed the rest
    # of the secret as a "variable name".
    path = tmp_path / "a.env"
    path.write_text("ARK_ENVIRONMENT=development\nANTHROPIC_API_KEY=zq\x0cSECRETPART\n")
    os.chmod(path, 0o600)
    problems = check_env_file(path)
    assert [p.variable for p in problems] == ["ANTHROPIC_API_KEY"]
    assert "SECRETPART" not in str(problems[0])
