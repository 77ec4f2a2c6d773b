"""DEPLOY_02 without an engine: docker-compose.yml against the Compose Specification's JSON
schema (vendored) and ARK's own list, `docker-compose config` on it, the env file generated
from the env schema, and the secret files."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ark_ops.compose import files as compose

pytestmark = pytest.mark.requirement("DEPLOY_02")


@pytest.fixture(scope="module")
def doc():
    return compose.load_compose()


def test_compose_file_is_valid_against_the_compose_specification(doc):
    assert compose.schema_problems(doc) == []
    assert compose.policy_problems(doc) == []
    assert compose.check_compose_file() == doc


def test_the_vendored_schema_names_its_version_and_source():
    readme = (compose.SPEC_SCHEMA.parent / "README.md").read_text()
    assert compose.SPEC_SCHEMA.name in readme and "1.29.2" in readme
    assert "https://github.com/compose-spec/compose-spec" in readme


@pytest.mark.skipif(not Path(compose.DOCKER_COMPOSE).exists(),
                    reason="Debian's docker-compose is not installed (./ops installs it)")
def test_docker_compose_config_accepts_the_file(tmp_path):
    out = compose.docker_compose_config()
    assert "internal: true" in out and "healthcheck" in out
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(compose.COMPOSE_FILE.read_text().replace("cpus: 0.5", "cpus: [0.5]"))
    (tmp_path / "compose").mkdir()
    (tmp_path / "compose" / "ark.env").write_text(compose.ENV_FILE.read_text())
    with pytest.raises(compose.ComposeError, match="docker-compose config refused"):
        compose.docker_compose_config(broken)


def test_every_ark_service_is_healthchecked_limited_non_root_and_read_only(doc):
    for name in compose.ARK_SERVICES:
        svc = doc["services"][name]
        assert svc["healthcheck"]["test"][0] == "CMD"
        assert (svc["cpus"], svc["mem_limit"], svc["read_only"]) == (0.5, "256m", True)
        assert svc["user"] == f"{compose.IMAGE_UID}:{compose.IMAGE_UID}"
        assert all(not v.startswith((".", "/")) for v in svc["volumes"])
    assert set(doc["volumes"]) == {"ark-state", "ark-logs", "redis-data"}
    assert doc["networks"]["ark"]["internal"] is True


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["services"]["kyle"].pop("healthcheck"), "services.kyle.healthcheck"),
    (lambda d: d["services"]["hrm"].update(user="0:0"), "services.hrm.user"),
    (lambda d: d["services"]["api"].update(read_only=False), "services.api.read_only"),
    (lambda d: d["services"]["joey"].update(volumes=["./state:/var/lib/ark"]),
     "services.joey.volumes"),
    (lambda d: d["services"]["kenny"].update(environment={"ARK_REDIS_PASSWORD": "x" * 20}),
     "services.kenny.environment.ARK_REDIS_PASSWORD"),
    (lambda d: d["networks"]["ark"].pop("internal"), "networks.ark.internal"),
    (lambda d: d["services"]["redis"].update(cpus={"no": 1}), "services.redis.cpus"),
])
def test_a_bad_stack_is_refused_naming_the_field(doc, mutate, field):
    bad = copy.deepcopy(doc)
    mutate(bad)
    problems = compose.schema_problems(bad) + compose.policy_problems(bad)
    assert any(p.startswith(field) for p in problems), problems
    assert not any("x" * 20 in p for p in problems)  # a secret value is never echoed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(service=st.sampled_from(compose.ARK_SERVICES),
       key=st.sampled_from(["cpus", "mem_limit", "healthcheck", "read_only", "user",
                            "networks", "volumes"]),
       value=st.one_of(st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
                       st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=1)))
def test_any_wrong_value_of_a_required_field_names_that_field(service, key, value):
    bad = copy.deepcopy(compose.load_compose())
    if bad["services"][service].get(key) == value:
        return
    bad["services"][service][key] = value
    problems = compose.schema_problems(bad) + compose.policy_problems(bad)
    assert any(p.startswith(f"services.{service}.{key}") or
               p.startswith(f"services.{service}: ") for p in problems), problems


def test_env_file_is_generated_from_the_env_schema_and_valid():
    assert compose.ENV_FILE.read_text() == compose.render_env_file(), \
        "compose/ark.env is stale: run `invoke compose.env`"
    values = compose.check_env_file()
    assert values["ARK_REDIS_HOST"] == "redis" and values["ARK_ENVIRONMENT"] == "production"
    sensitive = [n for n, s in compose.env_schema()["variables"].items() if s["sensitive"]]
    assert sensitive and not set(sensitive) & set(values)


@pytest.mark.parametrize("line, named", [
    ("ARK_REDIS_PASSWORD=correct-horse-battery-staple", "ARK_REDIS_PASSWORD: is sensitive"),
    ("ARK_REDIS_PORT=seventy", "ARK_REDIS_PORT"),
    ("ARK_NOT_A_THING=1", "ARK_NOT_A_THING: not declared"),
    ("TRADING_PAPER_ONLY=true", "TRADING_PAPER_ONLY: domain trading"),
    ("ARK_FEATURE_X=maybe", "ARK_FEATURE_X"),
])
def test_a_bad_env_file_is_refused_naming_the_variable(tmp_path, line, named):
    path = tmp_path / "ark.env"
    path.write_text(compose.render_env_file() + line + "\n")
    with pytest.raises(compose.ComposeError) as info:
        compose.check_env_file(path)
    assert named in str(info.value)
    assert "correct-horse" not in str(info.value)


def test_a_line_that_is_not_an_assignment_names_its_line(tmp_path):
    path = tmp_path / "ark.env"
    path.write_text("# fine\nARK_LOG_LEVEL=INFO\nexport oops\n")
    with pytest.raises(compose.ComposeError, match="line 3: not NAME=VALUE"):
        compose.check_env_file(path)


@settings(max_examples=80, deadline=None)
@given(text=st.text(max_size=60))
def test_any_env_file_text_is_parsed_or_refused_with_a_clear_error(text):
    try:
        values = compose.parse_env_text(text)
    except compose.ComposeError as exc:
        assert "line " in str(exc) and "not NAME=VALUE" in str(exc)
        return
    for name, value in values.items():
        assert f"{name}={value}" in text


def test_secrets_are_made_once_private_and_valid(tmp_path):
    made = compose.ensure_secrets(tmp_path / "s", uid=os.geteuid())
    assert set(made) == set(compose.SECRETS)
    first = {n: p.read_text() for n, p in made.items()}
    for path in made.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o400
        assert len(path.read_text()) >= 32
    again = compose.ensure_secrets(tmp_path / "s", uid=os.geteuid())
    assert {n: p.read_text() for n, p in again.items()} == first  # kept, not regenerated


def test_a_weak_or_open_secret_file_is_refused_without_showing_it(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "ARK_REDIS_PASSWORD").write_text("short-secret")
    os.chmod(d / "ARK_REDIS_PASSWORD", 0o400)
    with pytest.raises(compose.ComposeError) as info:
        compose.ensure_secrets(d, uid=os.geteuid())
    assert "ARK_REDIS_PASSWORD" in str(info.value) and "short-secret" not in str(info.value)
    os.chmod(d / "ARK_REDIS_PASSWORD", 0o644)
    with pytest.raises(compose.ComposeError, match="readable by group or others"):
        compose.ensure_secrets(d, uid=os.geteuid())


def test_stopping_a_kept_engine_leaves_a_recycled_pid_alone(tmp_path, monkeypatch):
    from ark_ops.compose import engine as compose_engine

    state = tmp_path / "dockerd.json"
    monkeypatch.setattr(compose_engine, "STATE_FILE", state)
    monkeypatch.setattr(compose_engine, "restore_netfilter", lambda before: [])
    # The recorded pid now belongs to this test process, which is not dockerd.
    state.write_text(f'{{"pid": {os.getpid()}, "before": {{}}}}')
    assert compose_engine.stop_kept_engine(log=lambda _m: None) == []
    assert not state.exists()
    assert compose_engine.stop_kept_engine() == []  # nothing recorded: nothing to stop


def test_netfilter_state_reads_what_the_lab_bridge_depends_on():
    from ark_ops.compose import engine as compose_engine

    state = compose_engine.netfilter_state()
    assert state["ip_forward"] in ("0", "1")
    assert set(state) == {"forward_policy", "ip_forward", "bridge_nf_call_iptables"}
