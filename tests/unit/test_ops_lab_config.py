"""Lab addressing and the generated inventory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ark_ops.lab import inventory
from ark_ops.lab.config import SUBNET, LabHost, LabPaths


def test_hosts_get_distinct_addresses_inside_the_lab_subnet():
    addresses = {LabHost(i).address for i in range(1, 33)}
    assert len(addresses) == 32
    import ipaddress

    assert all(ipaddress.ip_address(a) in SUBNET for a in addresses)


def test_interface_names_fit_the_kernel_limit():
    assert all(len(LabHost(i).veth) <= 15 for i in range(1, 33))


@pytest.mark.parametrize("text", ["ark-lab-3", "3", " 3 ", "10.213.0.13"])
def test_parse_accepts_name_index_and_address(text):
    assert LabHost.parse(text) == LabHost(3)


@pytest.mark.parametrize("text", ["ark-lab-0", "99", "web-1", "10.213.0.200", ""])
def test_parse_rejects_unknown_hosts(text):
    with pytest.raises(ValueError):
        LabHost.parse(text)


def test_inventory_has_the_playbook_groups_and_pinned_host_keys(tmp_path):
    paths = LabPaths(state=tmp_path / "state", cache=tmp_path / "cache",
                     inventory=tmp_path / "inv")
    target = inventory.write(paths, [LabHost(1), LabHost(2)])
    data = yaml.safe_load(Path(target).read_text())
    ark = data["all"]["children"]["ark"]
    assert ark["hosts"]["ark-lab-2"]["ansible_host"] == LabHost(2).address
    for group in ("ark_redis", "ark_api", "ark_agents"):
        assert set(ark["children"][group]["hosts"]) == {"ark-lab-1", "ark-lab-2"}
    common = data["all"]["vars"]["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=yes" in common
    assert str(paths.known_hosts) in common
    assert data["all"]["vars"]["ark_lab"] is True


def _paths(tmp_path) -> LabPaths:
    return LabPaths(state=tmp_path / "state", cache=tmp_path / "cache",
                    inventory=tmp_path / "inv")


def test_plain_lab_inventory_logs_in_as_root_without_become(tmp_path):
    data = yaml.safe_load(inventory.write(_paths(tmp_path), [LabHost(1)]).read_text())
    assert data["all"]["vars"]["ansible_user"] == "root"
    assert "ansible_become" not in data["all"]["vars"]


@pytest.mark.requirement("INFRA_01")
def test_deploy_lab_inventory_logs_in_as_deploy_and_becomes_root(tmp_path):
    """The generated inventory is what every fleet command derives its sudo from."""
    from ark_ops.fleet.ssh import inventory_hosts

    target = inventory.write(_paths(tmp_path), [LabHost(1), LabHost(2)], user="deploy")
    data = yaml.safe_load(target.read_text())
    assert data["all"]["vars"]["ansible_user"] == "deploy"
    assert data["all"]["vars"]["ansible_become"] is True
    hosts = inventory_hosts(target)
    assert {h.user for h in hosts} == {"deploy"}
    assert all(h.become.enabled and h.become.user == "root" and h.become.password is None
               for h in hosts)


def test_lab_ssh_runs_commands_as_root_through_sudo_for_a_deploy_lab(tmp_path):
    import shlex

    from ark_ops.lab.ssh import lab_user, ssh_argv

    paths = _paths(tmp_path)
    assert lab_user(paths) == "root"
    assert ssh_argv(paths, LabHost(1), "id -u && touch /x")[-2:] == [
        f"root@{LabHost(1).address}", "id -u && touch /x"]
    paths.state.mkdir(parents=True)
    paths.ssh_user_file.write_text("deploy\n")
    argv = ssh_argv(paths, LabHost(1), "id -u && touch /x")
    assert argv[-7:-5] == [f"deploy@{LabHost(1).address}", "sudo"]
    # ssh joins the words into one line for the remote shell: both parts run as root.
    remote_line = " ".join(argv[-6:])
    assert shlex.split(remote_line) == ["sudo", "-n", "--", "sh", "-c", "id -u && touch /x"]
    assert ssh_argv(paths, LabHost(1), "true", as_root=False)[-1] == "true"


@pytest.mark.parametrize("user", ["", "Root", "deploy user", "-o", "a" * 40, "de;ploy"])
def test_lab_up_user_must_be_a_user_name(user):
    from ark_ops.errors import OpsError
    from ark_ops.lab.operator import check_user_name

    with pytest.raises(OpsError, match="--user"):
        check_user_name(user)


def test_lab_down_closes_the_ssh_master_ansible_keeps_to_each_host(tmp_path):
    """The master's ControlPath is the one ansible.cfg gives Ansible and testinfra: a lab host
    re-created at the same address must not be reached through its predecessor's master."""
    import configparser

    from ark_ops.lab.ssh import master_exit_argv
    from ark_ops.paths import ANSIBLE_CONTROL_DIR, REPO_ROOT

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO_ROOT / "ansible.cfg")
    assert cfg["ssh_connection"]["control_path"] == "%(directory)s/%%C"
    assert "control_path_dir" not in cfg["ssh_connection"]  # so Ansible's default, below
    paths = _paths(tmp_path)
    paths.state.mkdir(parents=True)
    paths.ssh_user_file.write_text("deploy\n")
    argv = master_exit_argv(paths, LabHost(2))
    assert argv[:3] == ["ssh", "-O", "exit"]
    assert f"ControlPath={ANSIBLE_CONTROL_DIR}/%C" in argv
    assert Path("~/.ansible/cp").expanduser() == ANSIBLE_CONTROL_DIR  # Ansible's default dir
    assert argv[-1] == f"deploy@{LabHost(2).address}"


def test_an_sshd_without_source_penalties_gets_no_exemption_file(tmp_path):
    """Debian 12's sshd has no PerSourcePenaltyExemptList: writing it would fail `sshd -t`."""
    from ark_ops.lab import operator

    sbin = tmp_path / "usr" / "sbin"
    sbin.mkdir(parents=True)
    (sbin / "sshd").write_bytes(b"\x7fELF permitrootlogin maxstartups")
    operator.exempt_control_node(tmp_path, "10.213.0.1")
    assert not (tmp_path / operator.PENALTY_DROP_IN).exists()
