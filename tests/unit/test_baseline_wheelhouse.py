"""DEPLOY_01: the wheelhouse is built for each (Python, architecture) the hosts report, and an
unsupported pair is refused before anything is built or downloaded."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ark_ops.deploy import platforms as wheel_platforms
from ark_ops.deploy import wheelhouse
from ark_ops.deploy.lockfile import parse_lock
from ark_ops.deploy.platforms import WheelPlatform, platform_of, required_platforms
from ark_ops.errors import OpsError
from ark_ops.paths import REPO_ROOT

pytestmark = pytest.mark.requirement("DEPLOY_01")


def facts(major=3, minor=11, arch="x86_64"):
    return {"ansible_python": {"version": {"major": major, "minor": minor, "micro": 2}},
            "ansible_architecture": arch}


def test_a_hosts_facts_give_its_pair():
    assert platform_of("h1", facts(3, 12, "aarch64")) == WheelPlatform("3.12", "aarch64")


def test_each_distinct_pair_is_built_once():
    by_host = {"a": WheelPlatform("3.11", "x86_64"), "b": WheelPlatform("3.11", "x86_64"),
               "c": WheelPlatform("3.12", "aarch64")}
    assert required_platforms(by_host) == [WheelPlatform("3.11", "x86_64"),
                                           WheelPlatform("3.12", "aarch64")]


def test_an_unsupported_pair_is_refused_naming_every_host_and_what_to_do():
    by_host = {"ok1": WheelPlatform("3.11", "x86_64"), "old": WheelPlatform("3.9", "x86_64"),
               "pi": WheelPlatform("3.11", "armv7l")}
    with pytest.raises(OpsError) as err:
        required_platforms(by_host)
    text = str(err.value)
    assert "old has Python 3.9 on x86_64" in text and "pi has Python 3.11 on armv7l" in text
    assert "ok1" not in text and "--limit" in text and text.startswith("refused before any")


def test_build_refuses_an_unsupported_target_before_building_anything(tmp_path, monkeypatch):
    def must_not_run(*_a, **_k):
        raise AssertionError("built or downloaded for an unsupported platform")

    monkeypatch.setattr(wheelhouse, "build_runtime_wheel", must_not_run)
    monkeypatch.setattr(wheelhouse.subprocess, "run", must_not_run)
    with pytest.raises(OpsError, match="Python 3.10 on x86_64"):
        wheelhouse.build(REPO_ROOT / "requirements.lock", tmp_path,
                         targets=[WheelPlatform("3.10", "x86_64")])
    assert list(tmp_path.iterdir()) == []


def test_pip_downloads_for_the_targets_python_and_architecture(tmp_path):
    cmd = wheelhouse.pip_download_command(WheelPlatform("3.12", "aarch64"),
                                          tmp_path / "d.lock", tmp_path)
    assert cmd[cmd.index("--python-version") + 1] == "3.12"
    platforms = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"]
    assert platforms and all(p.endswith("_aarch64") for p in platforms)


def test_markers_follow_the_target():
    markers = wheelhouse.target_markers(WheelPlatform("3.12", "aarch64"))
    assert markers["platform_machine"] == "aarch64"
    assert markers["python_version"] == "3.12"
    assert wheelhouse.target_markers(WheelPlatform("3.11", "x86_64"))[
        "python_full_version"] == "3.11.2"


def test_the_runtime_closure_is_the_same_on_every_supported_architecture():
    # runtime.lock has no markers and lists the union; that is only right while the closures
    # agree. If this fails, runtime.lock needs per-platform markers.
    pins = parse_lock(REPO_ROOT / "requirements.lock")
    from packaging.requirements import Requirement

    roots = [Requirement(r) for r in ("fastapi", "uvicorn", "redis", "pydantic-settings",
                                      "psutil", "prometheus-client", "cryptography")]
    closures = {arch: {p.name for p in wheelhouse.dependency_closure(
        roots, pins, [WheelPlatform("3.11", arch)])} for arch in wheel_platforms.SUPPORTED_ARCHES}
    first = next(iter(closures.values()))
    assert first and all(c == first for c in closures.values())


def test_the_facts_tree_is_read_and_unreachable_or_failed_hosts_left_out(tmp_path):
    (tmp_path / "a").write_text(json.dumps({"ansible_facts": facts(), "changed": False}))
    (tmp_path / "b").write_text(json.dumps({"unreachable": True, "msg": "no route"}))
    (tmp_path / "c").write_text(json.dumps({"failed": True, "ansible_facts": {}}))
    assert list(wheel_platforms.read_tree(tmp_path)) == ["a"]


def test_an_unreadable_facts_file_is_a_clear_error(tmp_path):
    (tmp_path / "h1").write_text("ERROR! no inventory")
    with pytest.raises(OpsError, match="could not read h1's facts"):
        wheel_platforms.read_tree(tmp_path)


odd = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                st.text(max_size=40), st.lists(st.integers(), max_size=3),
                st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


@settings(max_examples=300, deadline=None)
@given(major=odd, minor=odd, arch=odd, drop=st.sampled_from(["", "ansible_python",
                                                             "ansible_architecture"]))
def test_odd_fact_values_give_a_pair_or_an_error_naming_the_field(major, minor, arch, drop):
    f = facts(major, minor, arch)
    f.pop(drop, None)
    try:
        got = platform_of("h9", f)
    except ValueError as exc:
        assert str(exc).startswith("h9: fact ansible_")
        field = str(exc).split("fact ")[1].split(" ")[0]
        assert field in ("ansible_python.version", "ansible_architecture")
        return
    # Accepted only when the facts really are integers and an architecture name.
    assert type(major) is int and type(minor) is int and isinstance(arch, str)
    assert got == WheelPlatform(f"{major}.{minor}", arch)
    assert got.supported == (got.python in wheel_platforms.SUPPORTED_PYTHONS
                             and arch in wheel_platforms.SUPPORTED_ARCHES)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8),
                       st.builds(WheelPlatform, st.sampled_from(["3.9", "3.11", "3.12", "4.0"]),
                                 st.sampled_from(["x86_64", "aarch64", "riscv64"])),
                       min_size=1, max_size=6))
def test_required_platforms_builds_all_or_refuses_all_bad_hosts(by_host):
    bad = sorted(h for h, p in by_host.items() if not p.supported)
    try:
        got = required_platforms(by_host)
    except OpsError as exc:
        assert bad and all(f"{h} has " in str(exc) for h in bad)
        return
    assert not bad and set(got) == set(by_host.values())


def test_targets_from_the_hosts_are_checked_before_pip_runs(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(wheelhouse, "build_runtime_wheel", lambda out: built.append(out))

    def no_pip(*_a, **_k):
        raise AssertionError("pip ran for an unsupported platform")

    monkeypatch.setattr(wheelhouse.subprocess, "run", no_pip)
    with pytest.raises(OpsError, match="Python 3.11 on armv7l"):
        wheelhouse.build(REPO_ROOT / "requirements.lock", tmp_path,
                         targets=lambda: [WheelPlatform("3.11", "armv7l")])
    assert built == [tmp_path]  # the local wheel was built meanwhile; no host was touched
