"""SEC_01: the typed env schema, `ark env check`, per-unit credential domains, and that no
secret value ever appears in a message."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ark_runtime.cli import main as ark_main
from ark_runtime.host.envcheck import (
    ENV_SCHEMA,
    check_env,
    check_env_file,
    domains_for_unit,
    parse_env_file,
)
from ark_runtime.settings import UNITS, VARIABLES, spec_for

pytestmark = pytest.mark.requirement("SEC_01")

REPO = Path(__file__).resolve().parents[2]
SECRET = "zq-Very-Secret-Value-0123456789abcdef"  # satisfies every min_length

GOOD_PROD = {
    "ARK_ENVIRONMENT": "production",
    "ARK_API_HOST": "10.0.0.5",
    "ARK_API_PORT": "8101",
    "ARK_API_SECRET": SECRET,
    "ARK_REDIS_HOST": "redis.internal",
    "ARK_REDIS_PORT": "6379",
    "ARK_REDIS_PASSWORD": SECRET,
    "ARK_STATE_DIR": "/var/lib/ark",
}


def write(path: Path, values: dict[str, str], mode: int = 0o600) -> Path:
    path.write_text("# test\n" + "".join(f"{k}={v}\n" for k, v in values.items()))
    os.chmod(path, mode)
    return path


def names(problems: list) -> list[str]:
    return [p.variable for p in problems if p.severity == "error"]


def test_the_env_schema_is_one_file_inside_the_package() -> None:
    # Issue #17: the top-level copy (.env.schema) is gone; hosts read the package's.
    assert not (REPO / ".env.schema").exists()
    assert ENV_SCHEMA == REPO / "ark_runtime/env.schema.yaml" and ENV_SCHEMA.is_file()


def test_schema_covers_the_required_variables() -> None:
    v = yaml.safe_load(ENV_SCHEMA.read_text())["variables"]
    assert v["ARK_ENVIRONMENT"]["values"] == ["development", "staging", "production"]
    assert v["ARK_API_PORT"]["type"] == v["ARK_REDIS_PORT"]["type"] == "port"
    for secret in ("ARK_REDIS_PASSWORD", "ARK_API_SECRET", "TELEGRAM_BOT_TOKEN",
                   "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "TRADING_API_KEY",
                   "TRADING_API_SECRET", "ARK_REDIS_URL"):  # fmt: skip
        assert v[secret]["sensitive"] is True, secret
        assert VARIABLES[secret].sensitive is True, secret
    assert v["TRADING_PAPER_ONLY"]["type"] == "bool" and v["TRADING_PAPER_ONLY"]["default"] is True
    assert {s["domain"] for s in v.values()} == {
        "infrastructure", "api", "telegram", "llm", "trading", "features"
    }  # fmt: skip
    domains = yaml.safe_load(ENV_SCHEMA.read_text())["domains"]
    for name, spec in v.items():
        assert {"domain", "type", "required", "sensitive", "description", "default"} <= set(spec)
        assert spec["domain"] in domains, name
    assert spec_for("ARK_FEATURE_ANYTHING").kind == "bool"


def test_domains_for_unit() -> None:
    assert domains_for_unit("kenny") == ["infrastructure", "trading", "features"]
    assert domains_for_unit("ark-agent@kenny") == domains_for_unit("kenny")
    for agent in ("kyle", "joey", "hrm"):
        assert domains_for_unit(agent) == ["infrastructure", "features"]
    assert "llm" in domains_for_unit("api") and "trading" not in domains_for_unit("api")
    # the API's signing secret reaches the API only, never an agent
    assert "api" in domains_for_unit("api")
    assert all("api" not in domains_for_unit(a) for a in ("kyle", "joey", "kenny", "hrm"))
    # only Kenny gets trading credentials
    assert [u for u, d in UNITS.items() if "trading" in d] == ["kenny"]
    with pytest.raises(KeyError, match="unknown unit"):
        domains_for_unit("mallory")


def test_good_production_file(tmp_path: Path) -> None:
    assert check_env_file(write(tmp_path / "a.env", GOOD_PROD)) == []


def test_development_needs_no_secrets(tmp_path: Path) -> None:
    assert check_env_file(write(tmp_path / "a.env", {"ARK_ENVIRONMENT": "development"})) == []


def test_production_requires_secrets(tmp_path: Path) -> None:
    values = {k: v for k, v in GOOD_PROD.items() if k != "ARK_REDIS_PASSWORD"}
    problems = check_env_file(write(tmp_path / "a.env", values))
    assert names(problems) == ["ARK_REDIS_PASSWORD"]
    assert "required when ARK_ENVIRONMENT=production" in problems[0].message


def test_missing_environment_is_treated_as_production(tmp_path: Path) -> None:
    problems = check_env_file(write(tmp_path / "a.env", {"ARK_API_PORT": "80"}))
    assert {"ARK_ENVIRONMENT", "ARK_API_SECRET", "ARK_REDIS_PASSWORD"} <= set(names(problems))


def test_empty_value_counts_as_unset(tmp_path: Path) -> None:
    problems = check_env_file(write(tmp_path / "a.env", dict(GOOD_PROD, ARK_API_SECRET="")))
    assert names(problems) == ["ARK_API_SECRET"]


@pytest.mark.parametrize(
    "name, value, why",
    [
        ("ARK_ENVIRONMENT", "prod", "not one of"),
        ("ARK_API_PORT", "0", "out of range"),
        ("ARK_API_PORT", "99999", "out of range"),
        ("ARK_API_PORT", "80a", "not an integer"),
        ("ARK_REDIS_DB", "16", "out of range"),
        ("ARK_API_HOST", "bad host", "not a host"),
        ("ARK_STATE_DIR", "var/lib/ark", "absolute path"),
        ("ARK_STATE_DIR", "/var/../etc", "absolute path"),
        ("ARK_REDIS_URL", "http://x", "scheme must be"),
        ("ARK_REDIS_URL", "nonsense", "not a valid URL"),
        ("ARK_API_SECRET", "short", "shorter than 32"),
        ("TELEGRAM_CHAT_ID", "chat me", "expected format"),
        ("TELEGRAM_BOT_TOKEN", "123", "expected format"),
        ("TRADING_PAPER_ONLY", "false", "must be true"),
        ("TRADING_PAPER_ONLY", "maybe", "not a boolean"),
        ("ARK_FEATURE_NEW_THING", "perhaps", "not a boolean"),
        ("LLM_PROVIDER", "bard", "not one of"),
    ],
)
def test_bad_values_named_with_reason(name: str, value: str, why: str) -> None:
    problems = check_env({**GOOD_PROD, name: value})
    assert [(p.variable, p.severity) for p in problems] == [(name, "error")]
    assert why in problems[0].message


@pytest.mark.parametrize(
    "name, value",
    [
        ("ARK_REDIS_URL", "rediss://:pw@redis.internal:6380/0"),
        ("ARK_API_HOST", "::1"),
        ("TELEGRAM_BOT_TOKEN", "123456789:" + "A" * 35),
        ("TELEGRAM_CHAT_ID", "-100123"),
        ("TRADING_PAPER_ONLY", "TRUE"),
        ("ARK_FEATURE_X", "off"),
        ("LLM_MODEL", "claude-3.5"),
    ],
)
def test_good_values(name: str, value: str) -> None:
    assert check_env({**GOOD_PROD, name: value}) == []


def test_llm_key_required_for_its_provider() -> None:
    problems = check_env({**GOOD_PROD, "LLM_PROVIDER": "anthropic"})
    assert names(problems) == ["ANTHROPIC_API_KEY"]
    assert check_env({**GOOD_PROD, "LLM_PROVIDER": "anthropic",
                      "ANTHROPIC_API_KEY": SECRET}) == []  # fmt: skip


def test_domain_restricted_file(tmp_path: Path) -> None:
    agent_env = {k: v for k, v in GOOD_PROD.items() if k != "ARK_API_SECRET"}
    values = dict(agent_env, TRADING_API_KEY=SECRET)
    problems = check_env_file(write(tmp_path / "a.env", values), domains=domains_for_unit("kyle"))
    assert names(problems) == ["TRADING_API_KEY"]
    assert "belongs to domain trading" in problems[0].message
    assert check_env_file(write(tmp_path / "a.env", values),
                          domains=domains_for_unit("kenny")) == []  # fmt: skip
    # the API's secret in an agent's environment is refused too
    problems = check_env_file(write(tmp_path / "b.env", GOOD_PROD), domains=domains_for_unit("hrm"))
    assert names(problems) == ["ARK_API_SECRET"]


def test_trading_domain_file_alone(tmp_path: Path) -> None:
    f = write(tmp_path / "trading.env", {"TRADING_API_KEY": SECRET, "TRADING_PAPER_ONLY": "1"})
    assert check_env_file(f, domains=["trading"]) == []


def test_unknown_ark_variable_is_an_error_naming_it() -> None:
    problems = check_env({**GOOD_PROD, "ARK_REDIS_PASWORD": SECRET})
    assert [(p.variable, p.severity) for p in problems] == [("ARK_REDIS_PASWORD", "error")]
    assert "typo" in problems[0].message and SECRET not in str(problems[0])
    # a variable that is not ARK's (PATH, LANG, ...) is only a warning: ARK ignores it
    problems = check_env({**GOOD_PROD, "LANG": "C.UTF-8"})
    assert [(p.variable, p.severity) for p in problems] == [("LANG", "warning")]


def test_syntax_problems_and_duplicates() -> None:
    values, problems = parse_env_file(
        'A_B="quoted"\n\n# comment\n; also comment\nexport C=1\nnot a line\nA_B=second\n'
    )
    assert values["A_B"] == ("second", 7)
    assert [(p.line, p.severity) for p in problems] == [(5, "error"), (6, "error"), (7, "warning")]


def test_world_readable_secret_file(tmp_path: Path) -> None:
    problems = check_env_file(write(tmp_path / "a.env", GOOD_PROD, mode=0o644))
    assert len(problems) == 1 and "chmod 600" in problems[0].message
    assert check_env_file(write(tmp_path / "a.env", GOOD_PROD, 0o644), check_mode=False) == []
    # a file without secrets may be readable
    assert check_env_file(write(tmp_path / "b.env", {"ARK_ENVIRONMENT": "development"},
                                0o644)) == []  # fmt: skip


def test_unreadable_file(tmp_path: Path) -> None:
    [problem] = check_env_file(tmp_path / "missing.env")
    assert "cannot read" in problem.message


# --- secrets never leak -------------------------------------------------------------------


SENSITIVE = sorted(name for name, var in VARIABLES.items() if var.sensitive)
secret_text = st.text(
    alphabet=string.ascii_letters + string.digits + string.punctuation.replace("#", "") + " ",
    min_size=1, max_size=60,
).map(lambda s: "zq" + s.strip() + "qz")  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from(SENSITIVE), value=secret_text,
       domains=st.sampled_from([None, ["infrastructure"], ["trading"], ["llm"]]))  # fmt: skip
def test_no_secret_value_in_any_message(
    tmp_path: Path, name: str, value: str, domains: list[str] | None
) -> None:
    f = tmp_path / "fuzz.env"
    f.write_text(f"ARK_ENVIRONMENT=production\n{name}={value}\n{name} {value}\n")
    os.chmod(f, 0o644)
    problems = check_env_file(f, domains=domains)
    for problem in problems:
        assert value not in str(problem) and value[1:-1] not in str(problem)


def test_cli_check_exit_codes_and_no_secret_in_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "good.env", GOOD_PROD)
    assert ark_main(["env", "check", str(good)]) == 0
    bad = write(tmp_path / "bad.env", dict(GOOD_PROD, ARK_API_SECRET="zq-tooshort",
                                           ARK_API_PORT="http"))  # fmt: skip
    assert ark_main(["env", "check", str(bad)]) == 65  # DATAERR: the checked file is bad
    out = capsys.readouterr()
    assert "ARK_API_SECRET" in out.err and "ARK_API_PORT" in out.err
    assert "zq-tooshort" not in out.err + out.out
    agent_env = {k: v for k, v in GOOD_PROD.items() if k != "ARK_API_SECRET"}
    kenny_only = write(tmp_path / "k.env", dict(agent_env, TRADING_API_SECRET=SECRET))
    assert ark_main(["env", "check", "--unit", "kyle", str(kenny_only)]) == 65
    assert ark_main(["env", "check", "--unit", "kenny", str(kenny_only)]) == 0
    assert ark_main(["env", "check", "--unit", "nobody", str(good)]) == 64  # USAGE
    capsys.readouterr()
    assert ark_main(["env", "domains", "kenny"]) == 0
    assert capsys.readouterr().out.split() == ["infrastructure", "trading", "features"]
