"""DEPLOY_03: the hosts' runtime.lock is ark_runtime's closure, taken from the lock."""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement

from ark_ops import wheelhouse
from ark_ops.errors import OpsError
from ark_ops.inventories import REPO_ROOT
from ark_ops.lockfile import parse_lock

pytestmark = pytest.mark.requirement("DEPLOY_03")


@pytest.fixture(scope="module")
def pins():
    return parse_lock(REPO_ROOT / "requirements.lock")


def test_closure_follows_metadata_for_the_hosts_python(pins):
    closure = {p.name for p in wheelhouse.dependency_closure([Requirement("redis")], pins)}
    # redis-py needs async-timeout below 3.11.3, which Debian 12 hosts run.
    assert "async-timeout" in closure
    assert "redis" in closure


def test_closure_excludes_control_node_tools(pins):
    roots = [Requirement("fastapi"), Requirement("uvicorn"), Requirement("pydantic")]
    closure = {p.name for p in wheelhouse.dependency_closure(roots, pins)}
    assert {"fastapi", "starlette", "pydantic-core", "h11"} <= closure
    assert not {"ansible-core", "pytest", "invoke", "fabric"} & closure


def test_a_dependency_missing_from_the_lock_is_refused(pins):
    partial = {k: v for k, v in pins.items() if k != "h11"}
    with pytest.raises(OpsError, match="h11 is needed by ark_runtime but not in"):
        wheelhouse.dependency_closure([Requirement("uvicorn")], partial)


def test_runtime_wheel_is_reproducible(tmp_path):
    first = wheelhouse.build_runtime_wheel(tmp_path / "a")
    second = wheelhouse.build_runtime_wheel(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    reqs = {r.name for r in wheelhouse.wheel_requirements(first)}
    assert {"redis", "fastapi", "uvicorn"} <= reqs
