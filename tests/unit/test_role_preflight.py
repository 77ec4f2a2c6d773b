"""DEPLOY_01: each role's tasks/preflight.yml refuses bad inputs and unsupported hosts
with a message that names the field, before the role changes anything.

One ansible-playbook run on the control node (connection local, --check), one inventory
host per case: each host includes one role's preflight with its own inputs and fake host
facts (Debian 12 / systemd unless the case says otherwise); the recap and the tree
callback tell which host failed and why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ark_ops.deploy.playbook import parse_recap
from ark_runtime.bus.acl import component_names

REPO = Path(__file__).resolve().parents[2]
REDIS_PASSWORD = "Zq8pW3nRt6yUe1oI4aSd"
# One per Redis user of a pipeline of up to 4 Joey shards (ark_runtime/bus/acl.py).
USER_PASSWORDS = {u: f"Zq8pW3nRt6yUe1oI-{u}" for u in component_names(4)}
API_SECRET = "k" * 40
LEAKY_PASSWORD = "short pw"
LEAKY_SECRET = "tooShortSecret42"

# The control node stands in for the host: these must exist here for the good cases.
HOST_PROGRAMS = ["/usr/sbin/useradd", "/usr/sbin/groupadd", "/usr/sbin/nologin",
                 "/usr/bin/systemctl", "/usr/bin/systemd-analyze", "/usr/bin/python3"]

DEBIAN_12 = {
    "distribution": "Debian", "distribution_major_version": "12",
    "distribution_version": "12.8", "service_mgr": "systemd", "pkg_mgr": "apt",
    "python_version": "3.11.2", "python": {"executable": "/usr/bin/python3"},
}


def runtime_inputs(tmp: Path, **overrides) -> dict:
    wheelhouse = tmp / "wheelhouse"
    wheelhouse.mkdir(exist_ok=True)
    (wheelhouse / "runtime.lock").write_text("# empty lock\n")
    inputs = {
        "ark_runtime_wheelhouse_src": str(wheelhouse),
        "ark_runtime_api_port": 8101, "ark_runtime_metrics_port": 9101,
        "ark_runtime_redis_port": 6379, "ark_runtime_redis_host": "127.0.0.1",
        "ark_runtime_redis_password": REDIS_PASSWORD,
        "ark_runtime_redis_user_passwords": USER_PASSWORDS,
        "ark_runtime_api_secret": API_SECRET,
        "ark_runtime_environment": "production",
        "ark_runtime_env_schema_path": str(REPO / "ark_runtime/env.schema.yaml"),
        "ark_runtime_hrm_ruleset_src": str(REPO / "ark_runtime/hrm/HRM_RULESET.yaml"),
        "ark_runtime_agents": ["kyle", "joey", "kenny", "hrm"],
        "ark_runtime_user": "ark", "ark_runtime_group": "ark",
    }
    return {**inputs, **overrides}


def redis_inputs(**overrides) -> dict:
    return {"ark_redis_password": REDIS_PASSWORD, "ark_redis_user_passwords": USER_PASSWORDS,
            "ark_redis_joey_shards": 1, "ark_redis_port": 6379,
            "ark_redis_bind_addresses": ["127.0.0.1", "10.213.0.2"], **overrides}


# host -> (role, inputs, facts overrides, expected: None = passes, else words in the message)
def cases(tmp: Path) -> dict[str, tuple[str, dict, dict, list[str] | None]]:
    return {
        "base_good": ("ark_base", {}, {}, None),
        "base_root_user": ("ark_base", {"ark_base_user": "root"}, {}, ["ark_base_user"]),
        "base_relative_dir": ("ark_base", {"ark_base_directories": [
            {"path": "var/lib/ark", "owner": "ark", "group": "ark", "mode": "0750"}]},
            {}, ["ark_base_directories", "var/lib/ark"]),
        "base_bad_mode": ("ark_base", {"ark_base_directories": [
            {"path": "/var/lib/ark", "owner": "ark", "group": "ark", "mode": "rwx"}]},
            {}, ["ark_base_directories", "/var/lib/ark"]),
        "base_duplicate_dir": ("ark_base", {"ark_base_directories": [
            {"path": "/var/lib/ark", "owner": "ark", "group": "ark", "mode": "0750"}] * 2},
            {}, ["listed twice"]),
        "base_ubuntu": ("ark_base", {}, {"distribution": "Ubuntu",
                                         "distribution_major_version": "24"},
                        ["Debian 12", "Ubuntu"]),
        "base_debian_13": ("ark_base", {}, {"distribution_major_version": "13",
                                            "distribution_version": "13.2",
                                            "python_version": "3.13.5"}, None),
        "base_debian_11": ("ark_base", {}, {"distribution_major_version": "11",
                                            "distribution_version": "11.9"},
                           ["Debian 12 and 13", "Debian 11.9"]),
        "redis_debian_13": ("ark_redis", redis_inputs(), {"distribution_major_version": "13",
                                                          "distribution_version": "13.2"}, None),
        "base_old_python": ("ark_base", {}, {"python_version": "3.9.2"},
                            ["Python >= 3.11", "3.9.2"]),
        "redis_good": ("ark_redis", redis_inputs(), {}, None),
        "redis_space_in_password": ("ark_redis", redis_inputs(
            ark_redis_password=LEAKY_PASSWORD + " and more"), {}, ["ark_redis_password"]),
        "redis_weak_user_password": ("ark_redis", redis_inputs(
            ark_redis_user_passwords={**USER_PASSWORDS, "hrm": "short"}), {},
            ["ark_redis_user_passwords", "hrm"]),
        "redis_user_password_missing": ("ark_redis", redis_inputs(
            ark_redis_joey_shards=5), {}, ["ark_redis_user_passwords", "joey-4"]),
        "redis_port_out_of_range": ("ark_redis", redis_inputs(ark_redis_port=70000), {},
                                    ["ark_redis_port", "70000"]),
        "redis_hostname_bind": ("ark_redis", redis_inputs(
            ark_redis_bind_addresses=["127.0.0.1", "redis.example"]), {},
            ["ark_redis_bind_addresses", "redis.example"]),
        "redis_bad_maxmemory": ("ark_redis", redis_inputs(ark_redis_maxmemory="lots"), {},
                                ["ark_redis_maxmemory", "lots"]),
        "redis_no_systemd": ("ark_redis", redis_inputs(), {"service_mgr": "sysvinit"},
                             ["systemd", "sysvinit"]),
        "runtime_good": ("ark_runtime", runtime_inputs(tmp), {}, None),
        "runtime_no_user_password": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_redis_user_passwords={
                k: v for k, v in USER_PASSWORDS.items() if k != "kenny"}), {},
            ["ark_runtime_redis_user_passwords", "kenny"]),
        "runtime_no_wheelhouse": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_wheelhouse_src=str(tmp / "nowhere")), {},
            ["runtime.lock", "invoke deploy"]),
        "runtime_same_ports": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_metrics_port=8101), {}, ["ark_runtime_metrics_port"]),
        # UI_01 (issue 21): the API's user must not be the agents' (polkit, audit _UID).
        "runtime_api_user_is_ark": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_api_user="ark"), {}, ["ark_runtime_api_user", "agents'"]),
        "runtime_redis_port_taken": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_redis_port=8101), {}, ["ark_runtime_redis_port"]),
        # Redis on another host may use the same port number as this host's API.
        "runtime_remote_redis_good": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_redis_port=8101, ark_runtime_redis_host="10.213.0.9"), {}, None),
        # INFRA_01: no ark_redis host and no override leaves the runtime without a Redis.
        "runtime_no_redis_host": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_redis_host=""), {}, ["ark_runtime_redis_host", "ark_redis"]),
        "runtime_relative_state_dir": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_state_dir="var/lib/ark"), {}, ["ark_runtime_state_dir"]),
        "runtime_unknown_agent": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_agents=["kyle", "bob"]), {}, ["ark_runtime_agents", "bob"]),
        # Issue #12: Joey's shards; a host may run some of them.
        "runtime_two_shards_split_good": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_joey_shards=2, ark_runtime_joey_shards_here=[1]), {}, None),
        "runtime_zero_shards": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_joey_shards=0), {}, ["ark_runtime_joey_shards"]),
        "runtime_shard_past_count": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_joey_shards=2, ark_runtime_joey_shards_here=[0, 2]), {},
            ["ark_runtime_joey_shards_here"]),
        "runtime_short_secret": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_api_secret=LEAKY_SECRET), {}, ["ark_runtime_api_secret"]),
        "runtime_bad_interval": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_snapshot_interval="soon"), {}, ["ark_runtime_snapshot_interval"]),
        "runtime_no_ruleset": ("ark_runtime", runtime_inputs(
            tmp, ark_runtime_hrm_ruleset_src=str(tmp / "missing.yaml")), {},
            ["ark_runtime_hrm_ruleset_src"]),
    }


PLAYBOOK = """
- name: Role preflights under test
  hosts: all
  gather_facts: false
  tasks:
    - name: Fake host facts (cached, so the preflight does not gather real ones)
      ansible.builtin.set_fact:
        distribution: "{{ fake_facts.distribution }}"
        distribution_major_version: "{{ fake_facts.distribution_major_version }}"
        distribution_version: "{{ fake_facts.distribution_version }}"
        service_mgr: "{{ fake_facts.service_mgr }}"
        pkg_mgr: "{{ fake_facts.pkg_mgr }}"
        python_version: "{{ fake_facts.python_version }}"
        python: "{{ fake_facts.python }}"
        cacheable: true

    - name: Run the role's preflight
      ansible.builtin.include_role:
        name: "{{ role_under_test }}"
        tasks_from: preflight
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """(cases, host -> (failed?, last message), everything ansible printed)."""
    missing = [p for p in HOST_PROGRAMS if not Path(p).exists()]
    if missing:
        pytest.skip(f"the control node stands in for a host and lacks {missing}")
    tmp = tmp_path_factory.mktemp("preflight")
    table = cases(tmp)
    hosts = {
        name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
               "role_under_test": role, "fake_facts": {**DEBIAN_12, **facts}, **inputs}
        for name, (role, inputs, facts, _) in table.items()
    }
    (tmp / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (tmp / "play.yml").write_text(PLAYBOOK)
    # The tree callback writes each host's last result (for a failed host: the failure).
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
           "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree",
           "ANSIBLE_CALLBACK_TREE_DIR": str(tmp / "tree")}
    exe = Path(sys.executable).parent / "ansible-playbook"
    proc = subprocess.run([str(exe), "-i", str(tmp / "hosts.yml"), str(tmp / "play.yml"),
                           "--check"], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=300)
    output = proc.stdout + proc.stderr
    recap = parse_recap(proc.stdout)
    assert set(recap) == set(table), output[-3000:]
    result = {}
    for host in table:
        last = json.loads((tmp / "tree" / host).read_text())
        output += json.dumps(last)
        result[host] = (recap[host]["failed"] > 0, last.get("msg", ""))
    return table, result, output


@pytest.mark.requirement("DEPLOY_01")
def test_good_inputs_on_a_supported_host_pass_every_preflight(outcomes):
    table, result, output = outcomes
    good = [host for host, case in table.items() if case[3] is None]
    assert len(good) >= 3
    for host in good:
        assert result[host][0] is False, (host, result[host], output[-3000:])


@pytest.mark.requirement("DEPLOY_01")
def test_each_bad_input_or_host_is_refused_naming_the_field(outcomes):
    table, result, output = outcomes
    for host, (_role, _inputs, _facts, words) in table.items():
        if words is None:
            continue
        failed, msg = result[host]
        assert failed, f"{host}: the preflight let it through ({msg})"
        for word in words:
            assert word in msg, (host, msg)


@pytest.mark.requirement("SEC_01")
def test_no_preflight_message_shows_a_secret(outcomes):
    _table, _result, output = outcomes
    for secret in (REDIS_PASSWORD, API_SECRET, LEAKY_PASSWORD, LEAKY_SECRET):
        assert secret not in output
