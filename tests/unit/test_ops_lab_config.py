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
