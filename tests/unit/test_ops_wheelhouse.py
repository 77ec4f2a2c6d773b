"""DEPLOY_03: the hosts' runtime.lock is ark_runtime's closure, taken from the lock."""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement

from ark_ops.deploy import wheelhouse
from ark_ops.deploy.lockfile import parse_lock
from ark_ops.errors import OpsError
from ark_ops.paths import REPO_ROOT

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


def _pin_for(wheel_file, name: str, version: str):
    from ark_ops.deploy.lockfile import Pin

    digest = wheelhouse._sha256(wheel_file)
    return Pin(name, version, (f"sha256:{digest}",), f"{name}=={version}")


X86 = wheelhouse.WheelPlatform("3.11", "x86_64")


def test_wheels_already_downloaded_with_matching_hashes_are_present(tmp_path):
    whl = tmp_path / "demo_pkg-1.2.0-py3-none-any.whl"
    whl.write_bytes(b"a wheel")
    assert wheelhouse.wheels_present(tmp_path, [_pin_for(whl, "demo-pkg", "1.2.0")], X86)


def test_a_changed_missing_or_other_version_wheel_is_not_present(tmp_path):
    whl = tmp_path / "demo_pkg-1.2.0-py3-none-any.whl"
    whl.write_bytes(b"a wheel")
    pin = _pin_for(whl, "demo-pkg", "1.2.0")
    assert not wheelhouse.wheels_present(tmp_path, [pin, _pin_for(whl, "other", "1.0")], X86)
    assert not wheelhouse.wheels_present(tmp_path, [_pin_for(whl, "demo-pkg", "1.3.0")], X86)
    whl.write_bytes(b"a tampered wheel")
    assert not wheelhouse.wheels_present(tmp_path, [pin], X86)


def test_a_rebuild_with_the_wheels_present_downloads_nothing(tmp_path, monkeypatch):
    """Two builds from the same lock: only the first downloads; a wheel whose hash no longer
    matches is downloaded again, not trusted. (A one-pin closure keeps this offline.)"""
    out = tmp_path / "wh"
    out.mkdir()
    good = b"the pinned wheel"
    (tmp_path / "pinned.whl").write_bytes(good)
    pin = _pin_for(tmp_path / "pinned.whl", "demo-pkg", "1.2.0")
    monkeypatch.setattr(wheelhouse, "dependency_closure", lambda *_a, **_k: [pin])
    downloads = []

    def fake_download(target, closure, deps_lock, out_dir):
        downloads.append([p.name for p in closure])
        (out_dir / "demo_pkg-1.2.0-py3-none-any.whl").write_bytes(good)

    monkeypatch.setattr(wheelhouse, "download", fake_download)
    said = []
    first = wheelhouse.build(REPO_ROOT / "requirements.lock", out, log=said.append).read_text()
    second = wheelhouse.build(REPO_ROOT / "requirements.lock", out, log=said.append).read_text()
    assert downloads == [["demo-pkg"]]
    assert any("already present" in s for s in said) and second == first
    (out / "demo_pkg-1.2.0-py3-none-any.whl").write_bytes(b"corrupt")
    wheelhouse.build(REPO_ROOT / "requirements.lock", out, log=said.append)
    assert len(downloads) == 2


def test_a_wheel_built_for_another_arch_is_not_present_for_this_one(tmp_path):
    whl = tmp_path / "demo_pkg-1.2.0-cp311-cp311-manylinux2014_aarch64.whl"
    whl.write_bytes(b"an arm wheel")
    pin = _pin_for(whl, "demo-pkg", "1.2.0")
    assert not wheelhouse.wheels_present(tmp_path, [pin], X86)
    assert wheelhouse.wheels_present(tmp_path, [pin], wheelhouse.WheelPlatform("3.11", "aarch64"))
    assert not wheelhouse.wheels_present(tmp_path, [pin], wheelhouse.WheelPlatform("3.12",
                                                                                     "aarch64"))
