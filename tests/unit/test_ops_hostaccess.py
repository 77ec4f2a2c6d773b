"""How fleet commands log in and become root, derived from inventory vars
(ark_ops.fleet.hostaccess).

The same derivation serves panic, recover, DR, audit, config, logs, trace and verify, so these
tests pin it: Ansible's meaning of each var, a clear error naming a bad var, and a become
password that never reaches a command line, an error or a repr.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ark_ops.errors import OpsError
from ark_ops.fleet.hostaccess import (
    PROMPT,
    Become,
    InventoryVarError,
    access_from_vars,
)
from ark_ops.fleet.logs import ssh_argv, ssh_input
from ark_ops.fleet.panic import panic_command
from ark_ops.fleet.ssh import FleetHost, inventory_hosts, remote_script

# panic/recover (and every other fleet command) reach hosts through this derivation.
pytestmark = pytest.mark.requirement("REC_01")

SECRET = "s3cr3t-Sudo-" + "x9" * 6


def test_root_login_runs_commands_directly():
    a = access_from_vars("h1", {"ansible_host": "10.0.0.5"})
    assert (a.user, a.address, a.port, a.become.enabled) == ("root", "10.0.0.5", 22, False)
    assert a.become.wrap("systemctl kill x") == "systemctl kill x"


def test_a_non_root_user_escalates_with_sudo_even_when_become_is_unset():
    # What the deploy playbook does (play-level `become: true`): fleet commands match it.
    a = access_from_vars("h1", {"ansible_user": "deploy"})
    assert a.become == Become(enabled=True, user="root")
    assert a.become.wrap("id -u") == "sudo -n -u root -- sh -c 'id -u'"


@pytest.mark.parametrize("value", [False, "no", "false", "0", 0, "off"])
def test_become_false_is_honoured(value):
    a = access_from_vars("h1", {"ansible_user": "deploy", "ansible_become": value})
    assert not a.become.enabled
    assert a.become.wrap("id -u") == "id -u"


@pytest.mark.parametrize("value", [True, "yes", "true", "1", 1, "on"])
def test_become_true_and_become_user_are_honoured(value):
    a = access_from_vars("h1", {"ansible_user": "deploy", "ansible_become": value,
                                "ansible_become_user": "ark-admin"})
    assert a.become.enabled and a.become.user == "ark-admin"
    assert "sudo -n -u ark-admin -- sh -c" in a.become.wrap("true")


def test_root_with_become_true_needs_no_sudo():
    assert not access_from_vars("h1", {"ansible_become": True}).become.enabled


@pytest.mark.parametrize(("var", "value"), [
    ("ansible_become", "maybe"), ("ansible_become", 2), ("ansible_become", []),
    ("ansible_become_method", "su"), ("ansible_become_method", "doas"),
    ("ansible_become_user", "root; reboot"), ("ansible_become_user", "-u0"),
    ("ansible_user", "Deploy User"), ("ansible_user", ""),
    ("ansible_port", "ssh"), ("ansible_port", 0), ("ansible_port", 70000),
    ("ansible_port", True), ("ansible_host", "-oProxyCommand=x"), ("ansible_host", "a b"),
])
def test_a_bad_value_is_a_clear_error_naming_the_var_and_host(var, value):
    with pytest.raises(InventoryVarError) as info:
        access_from_vars("web-3", {"ansible_user": "deploy", var: value})
    assert var in str(info.value) and "web-3" in str(info.value)
    assert info.value.exit_code == 78


def test_a_bad_password_value_is_named_but_never_shown():
    with pytest.raises(InventoryVarError) as info:
        access_from_vars("h1", {"ansible_user": "deploy",
                                "ansible_become_password": SECRET + "\nmore"})
    assert "ansible_become_password" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("var", ["ansible_become_password", "ansible_become_pass",
                                 "ansible_sudo_pass"])
def test_a_become_password_is_answered_by_a_watcher_never_on_the_command_line(var):
    a = access_from_vars("h1", {"ansible_user": "deploy", var: SECRET})
    line = a.become.wrap(panic_command("me"))
    assert SECRET not in line and shlex.quote(PROMPT) in line and " -S " in line
    [watcher] = a.become.watchers()
    assert watcher.response == SECRET + "\n"
    assert SECRET not in repr(a) and SECRET not in repr(a.become)
    assert a.become.scrub(f"sudo said {SECRET}!") == "sudo said ***!"


def test_ssh_commands_read_the_password_from_stdin():
    a = access_from_vars("h1", {"ansible_user": "deploy", "ansible_become_pass": SECRET})
    host = FleetHost.from_access("h1", a, {})
    argv = ssh_argv(host, "cat /var/log/ark/*.log")
    assert all(SECRET not in part for part in argv)
    assert argv[-2] == "deploy@h1" and argv[-1].startswith("sudo -S -p '' -u root -- sh -c")
    assert ssh_input(host) == SECRET + "\n"
    no_password = FleetHost.from_access("h1", access_from_vars("h1", {"ansible_user": "d"}), {})
    assert ssh_input(no_password) == "" and "sudo -n" in ssh_argv(no_password, "true")[-1]


def test_inventory_hosts_reads_become_from_group_vars_and_templates(tmp_path: Path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(
        f"sudo_secret: {SECRET}\nansible_become_password: '{{{{ sudo_secret }}}}'\n")
    (tmp_path / "hosts.yml").write_text(
        "all:\n  vars: {ansible_user: deploy, ansible_become: true}\n"
        "  children:\n    ark:\n      hosts:\n        a1: {ansible_host: 10.0.0.1}\n"
        "        a2: {ansible_host: 10.0.0.2, ansible_become: false}\n")
    hosts = {h.name: h for h in inventory_hosts(tmp_path / "hosts.yml")}
    assert hosts["a1"].become == Become(enabled=True, user="root", password=SECRET)
    assert hosts["a1"].become.password == SECRET
    assert not hosts["a2"].become.enabled


def test_inventory_hosts_names_the_bad_var(tmp_path: Path):
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    ark:\n      hosts:\n"
        "        a1: {ansible_user: deploy, ansible_become_method: su}\n")
    with pytest.raises(OpsError, match="ansible_become_method of host a1"):
        inventory_hosts(tmp_path / "hosts.yml")


def test_every_remote_script_starts_from_the_shared_prelude():
    for command in (panic_command("me"), *(remote_script(name) for name in
                                           ("recover.sh", "dr_bundle.sh", "dr_restore.sh"))):
        body = shlex.split(command)[2]
        assert body.startswith("# Shared start of every script in ark_ops/fleet/remote")
        assert "/etc/ark/env/infrastructure.env" not in body.split("ark_env() {")[1][200:]
    panic = shlex.split(panic_command("me"))[2]
    assert "ark_env\n" not in panic.split("ark_env() {")[1]  # panic needs no venv/env


_any_value = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                       st.text(max_size=40), st.lists(st.integers(), max_size=2),
                       st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_VARS = ("ansible_user", "ansible_port", "ansible_host", "ansible_become",
         "ansible_become_user", "ansible_become_method", "ansible_become_password",
         "ansible_ssh_common_args")


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(_VARS), _any_value, max_size=6))
def test_odd_inventory_values_give_a_usable_access_or_a_named_error(hostvars):
    try:
        a = access_from_vars("odd-1", hostvars)
    except InventoryVarError as exc:
        assert "odd-1" in str(exc)
        assert any(v in str(exc) for v in _VARS)
        password = hostvars.get("ansible_become_password")
        others = " ".join(repr(v) for k, v in hostvars.items() if k != "ansible_become_password")
        if isinstance(password, str) and len(password) > 3 and password not in others:
            assert password not in str(exc)
        return
    assert 1 <= a.port <= 65535 and a.address and a.user
    line = a.become.wrap("echo ok")
    if a.become.password:
        assert a.become.password not in line
    # Whatever the user name, the wrapped line is still one well-formed shell command.
    assert shlex.split(line)[-1] == "echo ok" if a.become.enabled else line == "echo ok"
