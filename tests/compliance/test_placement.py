"""INFRA_01 topology: each host runs what its inventory groups say, and nothing else.

ark_redis hosts run redis-server, ark_api hosts ark-api, ark_monitoring hosts Prometheus,
and the ark_agents hosts sharing a Redis run that pipeline's agents, each exactly once
among them (ark_ops/placement.py; all four on a host with a Redis of its own). A host
outside a group must not run (nor start at boot) that group's units: an agent host with a
redis-server listening fails here. Hosts with agents or the API reach the first ark_redis
host's Redis over the network with the password, read on the host from the root-only env
file (never on a command line).
"""

from __future__ import annotations

import pytest
import testinfra
from conftest import AGENTS, GROUP_UNITS, agent_unit, sentinel_primary

from ark_ops import placement
from ark_ops.verify.report import NOT_HERE

pytestmark = pytest.mark.requirement("INFRA_01")

ENV = "set -a; . /etc/ark/env/infrastructure.env; set +a; "
PYTHON = "/opt/ark/venv/bin/python"
# The agents' own path to Redis (ark_runtime's settings: ARK_REDIS_URL + password).
PING = f"{PYTHON} -c 'from ark_runtime.bus.streams import connect; print(connect().ping())'"
# The URL's host and port, with any credentials cut off on the host.
URL_ADDRESS = ENV + (""" printf '%s\\n' "$ARK_REDIS_URL" """
                     "| sed -E 's#^rediss?://([^@/]*@)?##; s#/.*##'")


def listening(host, port: int) -> list[str]:
    return host.check_output("ss -Hltnp 'sport = :%s'", str(port)).splitlines()


def running_units(host, units) -> dict[str, tuple[bool, bool]]:
    """{unit: (active, enabled)}, read from systemctl itself: testinfra's is_enabled falls
    back to SysV links for a unit whose file was removed or masked, which is not our answer.
    `masked` and a missing unit are neither active nor enabled."""
    out = {}
    for u in units:
        active = host.run("systemctl is-active %s", u).stdout.strip() == "active"
        state = host.run("systemctl is-enabled %s", u).stdout.strip()
        out[u] = (active, state in ("enabled", "enabled-runtime", "alias", "indirect"))
    return out


@pytest.mark.parametrize("group", list(GROUP_UNITS))
def test_runs_its_groups_units_and_no_other(host, hostvars, groups, group):
    name, wanted = hostvars["inventory_hostname"], group in groups
    for unit, (active, enabled) in running_units(host, GROUP_UNITS[group]).items():
        if wanted:
            assert active and enabled, f"{name} is in {group} but {unit} is not active"
        else:
            assert not active, f"{name} runs {unit} but is not in {group}"
            assert not enabled, f"{name} starts {unit} at boot but is not in {group}"


def test_runs_its_share_of_the_pipeline_and_no_other_agent(host, hostvars, agent_instances):
    name = hostvars["inventory_hostname"]
    # The four agents (shard 0 is joey) and every Joey shard instance the host has a unit for.
    present = host.run("ls -d /etc/systemd/system/ark-agent@joey-*.service.d 2>/dev/null"
                       ).stdout.split()
    extra = [p.rsplit("@", 1)[1].removesuffix(".service.d") for p in present]
    everything = sorted({*AGENTS, *extra, *agent_instances})
    states = running_units(host, [agent_unit(i) for i in everything])
    for instance in everything:
        active, enabled = states[agent_unit(instance)]
        if instance in agent_instances:
            assert active and enabled, f"{name} should run {instance} but it is not active"
        else:
            assert not active, (f"{name} runs {instance}, which its pipeline places elsewhere "
                                f"(this host's share: {agent_instances or 'none'})")
            assert not enabled, f"{name} starts {instance} at boot but should not run it"


def redis_ports(hostvars) -> tuple[int, int]:
    """Redis's plaintext port and its TLS port (issue #19 §4: the one clients use with TLS on)."""
    return int(hostvars.get("ark_redis_port", 6379)), int(hostvars.get("ark_redis_tls_port", 6380))


def test_redis_listens_only_on_ark_redis_hosts(host, hostvars, groups):
    name = hostvars["inventory_hostname"]
    found = {port: listening(host, port) for port in redis_ports(hostvars)}
    if "ark_redis" in groups:
        assert any(found.values()), f"{name} is in ark_redis but nothing listens on {list(found)}"
    else:
        taken = {port: who for port, who in found.items() if who}
        assert not taken, (f"{name} has a Redis listening on {', '.join(map(str, taken))} but "
                           f"is not in ark_redis: {taken}")


def test_api_listens_only_on_ark_api_hosts(host, hostvars, groups):
    name, port = hostvars["inventory_hostname"], int(hostvars.get("ark_api_port", 8101))
    found = listening(host, port)
    assert bool(found) == ("ark_api" in groups), (
        f"{name}: API port {port} listeners {found}, groups {sorted(groups)}")


def test_agent_processes_only_on_ark_agents_hosts(host, hostvars, groups, agent_instances):
    # [k]: the pattern does not match the shell that runs pgrep.
    procs = host.run("pgrep -a -f '/bin/ar[k] agent '").stdout.splitlines()
    name = hostvars["inventory_hostname"]
    if "ark_agents" in groups:
        assert len(procs) == len(agent_instances), (agent_instances, procs)
    else:
        assert not procs, f"{name} runs agents but is not in ark_agents: {procs}"


@pytest.fixture(scope="module")
def redis_address(request, host, hostvars) -> str:
    """Where this host's runtime must find Redis: its own over loopback on a primary's host,
    its set's primary's address everywhere else - a replica's host too (issue #20) - as
    roles/ark_runtime renders it."""
    groups = hostvars["groups"]
    runner = host.backend.ansible_runner
    replica_of = {h: runner.get_variables(h).get("ark_redis_replica_of")
                  for h in groups["ark_redis"]}
    me = hostvars["inventory_hostname"]
    server = placement.redis_server(me, groups["ark_redis"],
                                    runner.get_variables(me).get("ark_runtime_redis_server"),
                                    replica_of)
    if server == me:
        return "127.0.0.1"
    inventory = request.config.getoption("ansible_inventory")
    svars = testinfra.get_host(f"ansible://{server}",
                               ansible_inventory=inventory).ansible.get_variables()
    return svars.get("ark_listen_address") or svars["ansible_host"]


def test_the_runtime_uses_its_groups_redis(host, hostvars, redis_address):
    url = host.check_output(URL_ADDRESS)
    assert url in {f"{redis_address}:{port}" for port in redis_ports(hostvars)}, url
    result = host.run(ENV + PING)
    assert result.stdout.strip() == "True", result.stdout + result.stderr


def test_agents_hold_connections_to_the_remote_redis(host, hostvars, groups, redis_address):
    if "ark_agents" not in groups or redis_address == "127.0.0.1":
        pytest.skip(NOT_HERE + "only agent hosts without a Redis of their own reach it over "
                    "the network")
    # With Sentinels (issue #20) the agents reach whichever member is the primary now.
    address = sentinel_primary(host) or redis_address
    port = redis_ports(hostvars)[1]  # TLS (issue #19 §4): every such host is a remote client
    conns = host.check_output("ss -Htnp state established dst %s:%s", address, str(port))
    assert "python" in conns or "ark" in conns, f"no agent connection to {address}:{port}"
