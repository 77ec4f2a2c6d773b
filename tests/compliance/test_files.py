"""DEPLOY_01 / DEPLOY_03: user, directories and files have the intended owners and
modes, and the venv is the one built from this lock."""

from __future__ import annotations

import hashlib

import pytest

# path, owner, group, mode — the reasons are in roles/ark_base/defaults/main.yml.
EXPECTED = [
    ("/opt/ark", "root", "root", 0o755),
    ("/etc/ark", "root", "ark", 0o750),
    ("/etc/ark/env", "root", "root", 0o700),
    ("/etc/ark/env/infrastructure.env", "root", "root", 0o600),
    ("/var/lib/ark", "ark", "ark", 0o770),
    ("/var/log/ark", "ark", "ark", 0o750),
    pytest.param("/etc/systemd/system/ark-api.service", "root", "root", 0o644,
                 marks=pytest.mark.runs_on("ark_api")),
    pytest.param("/etc/systemd/system/ark-agent@.service", "root", "root", 0o644,
                 marks=pytest.mark.runs_on("ark_agents")),
    ("/etc/systemd/system/ark.target", "root", "root", 0o644),
    pytest.param("/etc/redis/ark.conf", "redis", "redis", 0o640,
                 marks=pytest.mark.runs_on("ark_redis")),
]


@pytest.mark.requirement("DEPLOY_01")
def test_ark_user_is_a_system_account_without_login(host):
    user = host.user("ark")
    assert user.exists
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    assert user.group == "ark"


@pytest.mark.requirement("DEPLOY_01")
@pytest.mark.parametrize("path,owner,group,mode", EXPECTED,
                         ids=[(e.values if hasattr(e, "values") else e)[0] for e in EXPECTED])
def test_owner_and_mode(host, path, owner, group, mode):
    f = host.file(path)
    assert f.exists, f"{path} is missing"
    assert (f.user, f.group) == (owner, group)
    assert f.mode == mode, f"{path} has mode {oct(f.mode)}, expected {oct(mode)}"


@pytest.mark.requirement("DEPLOY_01")
def test_ark_cannot_write_its_code_or_config(host):
    for path in ("/opt/ark/venv/bin", "/etc/ark"):
        result = host.run("runuser -u ark -- test -w %s", path)
        assert result.rc != 0, f"ark can write {path}"


@pytest.mark.requirement("DEPLOY_03")
def test_current_venv_was_built_from_the_deployed_lock(host):
    lock = host.file("/opt/ark/wheelhouse/runtime.lock").content_string.rstrip("\n")
    venv = host.file("/opt/ark/venv")
    assert venv.is_symlink
    marker = host.file(venv.linked_to + "/.ark-installed").content_string.strip()
    assert marker == hashlib.sha256(lock.encode()).hexdigest()


@pytest.mark.requirement("DEPLOY_03")
def test_venv_matches_the_lock_pins(host):
    lock = host.file("/opt/ark/wheelhouse/runtime.lock").content_string
    pins = {
        line.split("==")[0].strip().lower().replace("_", "-"): line.split("==")[1].split()[0]
        for line in lock.splitlines() if "==" in line and not line.startswith("#")
    }
    # importlib.metadata, not pip freeze: the runtime venv has no pip of its own.
    frozen = host.check_output(
        "/opt/ark/venv/bin/python -c 'import importlib.metadata as m; print(\"\\n\".join("
        "d.name + \"==\" + d.version for d in m.distributions()))'")
    installed = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in frozen.splitlines() if "==" in line
    }
    for name, version in pins.items():
        assert installed.get(name) == version, f"{name}: lock {version}, venv {installed.get(name)}"
