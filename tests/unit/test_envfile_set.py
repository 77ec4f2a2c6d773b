"""Issue 22 §3: `ark env set` rotates one variable of a rendered env file in place: the result
is byte for byte what the role's template renders with the new value (so the next deploy
changes nothing and restarts nothing), the value never reaches argv or output, and a value
the schema refuses leaves the file untouched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_role_env_contract import SAMPLE, _env

from ark_runtime.host.envfile import EnvFileError, with_variable
from tests.unit.test_snapshot_manifest import _cli

pytestmark = pytest.mark.requirement("SEC_01")


def _render(values: dict) -> str:
    import yaml

    schema = yaml.safe_load((Path(__file__).resolve().parents[2]
                             / "ark_runtime/env.schema.yaml").read_text())
    return _env().get_template("env/domain.env.j2").render(
        item="api", ansible_managed="managed", __ark_runtime_env_schema=schema,
        __ark_runtime_env_values=values)


@pytest.fixture
def api_env(tmp_path: Path) -> Path:
    path = tmp_path / "api.env"
    path.write_text(_render(SAMPLE))
    os.chmod(path, 0o600)
    return path


def test_the_rotated_file_is_what_the_role_renders(api_env: Path, tmp_path: Path) -> None:
    new = "N3w" * 16
    (tmp_path / "value").write_text(new + "\n")
    code, out, err = _cli("env", "set", str(api_env), "ARK_API_SECRET",
                          "--value-file", str(tmp_path / "value"))
    assert code == 0, err
    assert api_env.read_text() == _render({**SAMPLE, "ARK_API_SECRET": new})
    assert stat.S_IMODE(api_env.stat().st_mode) == 0o600
    assert new not in out + err and SAMPLE["ARK_API_SECRET"] not in out + err


def test_a_value_the_schema_refuses_leaves_the_file_untouched(api_env: Path,
                                                              tmp_path: Path) -> None:
    before = api_env.read_bytes()
    (tmp_path / "value").write_text("tooShort\n")
    code, out, err = _cli("env", "set", str(api_env), "ARK_API_SECRET",
                          "--value-file", str(tmp_path / "value"))
    assert code == 65 and "shorter than 32" in err and "tooShort" not in out + err
    assert api_env.read_bytes() == before
    assert [p.name for p in api_env.parent.iterdir() if p.name.startswith(".")] == []


def test_a_variable_of_another_domain_is_refused(api_env: Path, tmp_path: Path) -> None:
    (tmp_path / "value").write_text("x" * 40)
    code, _out, err = _cli("env", "set", str(api_env), "ARK_REDIS_PASSWORD",
                           "--value-file", str(tmp_path / "value"))
    assert code == 64 and "not a variable of the api domain" in err


def test_a_missing_variable_is_inserted_in_name_order() -> None:
    text = "# head\nA_ONE=\"1\"\nC_THREE=\"3\"\n"
    assert with_variable(text, "B_TWO", "2") == "# head\nA_ONE=\"1\"\nB_TWO=\"2\"\nC_THREE=\"3\"\n"
    assert with_variable("# only\n", "B_TWO", "2") == "# only\nB_TWO=\"2\"\n"


@settings(max_examples=200)
@given(st.text(max_size=80))
def test_any_value_round_trips_or_is_refused_by_name(value: str) -> None:
    from ark_runtime.host.envcheck import parse_env_file

    try:
        text = with_variable("X_A=\"1\"\n", "ARK_API_SECRET", value)
    except EnvFileError as exc:
        assert "ARK_API_SECRET" in str(exc) and (value not in str(exc) or not value.strip())
        return
    values, _ = parse_env_file(text)
    assert values["X_A"][0] == "1" and "ARK_API_SECRET" in values


def _render_redis_user(user: str, password: str) -> str:
    return _env().get_template("env/redis-user.env.j2").render(
        item=user, ansible_managed="managed",
        ark_runtime_redis_user_passwords={user: password})


def test_a_units_redis_user_file_takes_its_new_password_as_the_role_renders_it(
        tmp_path: Path) -> None:
    # secrets.rotate redis (issue 22 §3): the overlay file, checked as an overlay.
    (tmp_path / "redis").mkdir()
    path = tmp_path / "redis" / "joey-1.env"
    old, new = "0ld" * 14, "N3w" * 14
    path.write_text(_render_redis_user("joey-1", old))
    os.chmod(path, 0o600)
    (tmp_path / "value").write_text(new + "\n")
    code, out, err = _cli("env", "set", str(path), "ARK_REDIS_PASSWORD",
                          "--value-file", str(tmp_path / "value"))
    assert code == 0, err
    assert path.read_text() == _render_redis_user("joey-1", new)
    assert old not in out + err and new not in out + err


def test_a_file_outside_the_domains_and_the_redis_users_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "redis.conf"
    path.write_text("ARK_REDIS_PASSWORD=\"x\"\n")
    (tmp_path / "value").write_text("y" * 40)
    code, _out, err = _cli("env", "set", str(path), "ARK_REDIS_PASSWORD",
                           "--value-file", str(tmp_path / "value"))
    assert code == 64 and "a unit's Redis user" in err
