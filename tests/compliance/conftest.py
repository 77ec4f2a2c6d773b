"""testinfra compliance suite: each check proves a catalogue requirement on a host.

Run through `invoke verify`, which passes --hosts=ansible://ark and the inventory.
Checks marked `disruptive` (kill, reboot, corrupt) run on lab hosts, and on other
inventories only with --disruptive.

The suite follows the inventory's topology: a check marked `runs_on("ark_api")` (or
ark_redis, ark_agents, ark_monitoring) applies to the hosts in that group only, and
test_placement.py checks that every other host runs none of it.

No check puts a secret on a command line or pulls one into Python (where a failing
assertion would print it): a secret stays on the host, read there from its root-only
env file by the shell that needs it (`set -a; . /etc/ark/env/...; set +a; ...`).
"""

from __future__ import annotations

import json
import time

import pytest

from ark_ops import placement
from ark_ops.verify.report import DISRUPTIVE, NOT_HERE, host_of

# The units each group runs (what test_placement.py looks for everywhere else). An
# ark_agents host runs its share of its pipeline's agents: the `agent_instances` fixture.
AGENTS = placement.AGENTS
GROUP_UNITS = {
    "ark_redis": ("redis-server.service",),
    "ark_api": ("ark-api.service",),
    "ark_monitoring": ("prometheus.service",),
}


def agent_unit(instance: str) -> str:
    return f"ark-agent@{instance}.service"


def units_of(groups, instances) -> tuple[str, ...]:
    """ark.target plus what the host's groups and its share of the pipeline say it runs."""
    return ("ark.target", *(u for g, units in GROUP_UNITS.items() if g in groups
                            for u in units), *map(agent_unit, instances))


def pytest_addoption(parser):
    parser.addoption("--disruptive", action="store_true", default=False,
                     help="also run checks that disturb hosts outside the lab")


def pytest_collection_modifyitems(config, items):
    # Read-only checks first, then disruptive ones, the reboot last of all.
    def rank(item):
        if item.get_closest_marker("reboot"):
            return 2
        return 1 if item.get_closest_marker("disruptive") else 0

    items.sort(key=rank)
    # Under `invoke verify -n N --dist loadgroup` (pytest-xdist), all of a host's checks go
    # to one worker, in the order above; other hosts are checked by other workers meanwhile.
    for item in items:
        item.add_marker(pytest.mark.xdist_group(host_of(item)))


def pytest_configure(config):
    config.addinivalue_line("markers", "reboot: reboots the host (runs last)")
    config.addinivalue_line("markers", "runs_on(group): only for hosts in that inventory group")
    config.addinivalue_line("markers", "runs_agent(name): only for hosts that run that agent")


@pytest.fixture(scope="module")
def hostvars(host):
    return host.ansible.get_variables()


@pytest.fixture(autouse=True)
def _guard_disruptive(request, hostvars):
    if request.node.get_closest_marker("disruptive") is None:
        return
    if hostvars.get("ark_lab") or request.config.getoption("--disruptive"):
        return
    pytest.skip(DISRUPTIVE + "disturbs the host: runs on the lab, elsewhere only with "
                "--disruptive")


@pytest.fixture(scope="module")
def groups(hostvars) -> set[str]:
    """The inventory groups this host is in: what it is supposed to run."""
    return set(hostvars.get("group_names", []))


@pytest.fixture(scope="module")
def pipeline(host, hostvars) -> dict[str, str]:
    """{agent instance: host} of this host's pipeline (joey-k is Joey's shard k): the
    ark_agents hosts sharing its Redis, as the role places them (ark_ops/placement.py)."""
    groups = hostvars.get("groups", {})
    agent_hosts, redis_hosts = groups.get("ark_agents", []), groups.get("ark_redis", [])
    runner = host.backend.ansible_runner  # the other hosts' inventory variables
    server_of = _server_of(runner, agent_hosts, redis_hosts)
    shards = int(hostvars.get("ark_runtime_joey_shards", 1))
    return placement.pipeline(hostvars["inventory_hostname"], agent_hosts, server_of, shards)


@pytest.fixture(scope="module")
def redis_remote_clients(host, hostvars) -> list[str]:
    """The ARK hosts that use this host's Redis over the network (TLS is on for any, issue
    #19 §4), as the roles work it out (ark_ops/placement.py)."""
    groups = hostvars.get("groups", {})
    hosts, redis_hosts = groups.get("ark", []), groups.get("ark_redis", [])
    server_of = _server_of(host.backend.ansible_runner, hosts, redis_hosts)
    return placement.remote_clients(hostvars["inventory_hostname"], hosts, server_of)


@pytest.fixture(scope="module")
def redis_set(host, hostvars) -> list[str]:
    """Issue #20: the members of this host's Redis set (its primary first), from the
    inventory's ark_redis_replica_of; [this host] alone for a Redis with no replica."""
    redis_hosts = hostvars.get("groups", {}).get("ark_redis", [])
    runner = host.backend.ansible_runner
    replica_of = {h: runner.get_variables(h).get("ark_redis_replica_of") for h in redis_hosts}
    me = hostvars["inventory_hostname"]
    sets = placement.redis_sets(redis_hosts, replica_of)
    primary = replica_of.get(me) or me
    return [primary, *sets.get(primary, [])]


# Issue #20: the address the Sentinels name primary of this host's Redis set (any Sentinel
# answers; the first of infrastructure.env's that does), as the root tools log in. Empty when
# the host's pipeline has no Sentinels.
SENTINEL_PRIMARY = (
    "set -a; . /etc/ark/env/infrastructure.env; set +a; "
    '[ -n "${ARK_REDIS_SENTINELS:-}" ] || exit 0; '
    'for s in $(echo "$ARK_REDIS_SENTINELS" | tr , " "); do '
    'REDISCLI_AUTH="$ARK_REDIS_PASSWORD" timeout 10 redis-cli --no-auth-warning '
    '--user "$ARK_REDIS_USERNAME" ${ARK_REDIS_TLS_DIR:+--tls --cacert "$ARK_REDIS_TLS_DIR/ca.crt" '
    '--cert "$ARK_REDIS_TLS_DIR/host.crt" --key "$ARK_REDIS_TLS_DIR/host.key"} '
    '-h "${s%:*}" -p "${s##*:}" SENTINEL GET-MASTER-ADDR-BY-NAME "$ARK_REDIS_SENTINEL_MASTER" '
    "| head -1 | grep . && exit 0; done; exit 1")


def sentinel_primary(host) -> str | None:
    """The primary's address the Sentinels give this host, None without Sentinels."""
    out = host.run(SENTINEL_PRIMARY)
    assert out.rc == 0, f"no Sentinel answered: {out.stderr[-300:]}"
    return out.stdout.strip() or None


def _server_of(runner, hosts: list[str], redis_hosts: list[str]) -> dict[str, str]:
    """{host: the ark_redis host whose Redis it uses}: the override, else the role's rule (a
    replica, issue #20's ark_redis_replica_of, belongs to its primary's pipeline)."""
    replica_of = {h: runner.get_variables(h).get("ark_redis_replica_of") for h in redis_hosts}
    return {h: placement.redis_server(h, redis_hosts,
                                      runner.get_variables(h).get("ark_runtime_redis_server"),
                                      replica_of) for h in hosts}


@pytest.fixture(scope="module")
def agent_instances(hostvars, pipeline) -> list[str]:
    """The agent instances this host runs: all four where it has a Redis of its own."""
    return [i for i, where in pipeline.items() if where == hostvars["inventory_hostname"]]


@pytest.fixture(autouse=True)
def _guard_placement(request, hostvars):
    marker = request.node.get_closest_marker("runs_on")
    if marker is None or marker.args[0] in hostvars.get("group_names", []):
        return
    pytest.skip(f"{NOT_HERE}{hostvars['inventory_hostname']} is not in {marker.args[0]} "
                "(test_placement.py checks that it runs none of it)")


def _skip_unless_here(hostvars, instances, agent: str) -> None:
    if agent not in instances:
        pytest.skip(f"{NOT_HERE}{hostvars['inventory_hostname']} does not run {agent}: its "
                    f"share of the pipeline is {instances or 'none'}")


@pytest.fixture(autouse=True)
def _guard_agent(request, hostvars):
    """`runs_agent(name)`: in a pipeline spread over hosts, another host may run it."""
    marker = request.node.get_closest_marker("runs_agent")
    if marker is not None:
        _skip_unless_here(hostvars, request.getfixturevalue("agent_instances"), marker.args[0])


@pytest.fixture
def here(request, hostvars, agent_instances) -> str:
    """The test's `agent` parameter, when this host runs that agent (else the check skips)."""
    agent = request.getfixturevalue("agent")
    _skip_unless_here(hostvars, agent_instances, agent)
    return agent


@pytest.fixture(scope="module")
def api_port(hostvars):
    return int(hostvars.get("ark_api_port", 8101))


def api_tls(hostvars) -> bool:
    """Issue #21: the console is HTTPS unless the inventory turned it off."""
    return str(hostvars.get("ark_runtime_api_tls", True)).lower() not in ("false", "no", "0")


@pytest.fixture(scope="module")
def api_url(hostvars, api_port) -> str:
    """The console as the host itself reaches it (loopback; its certificate names it)."""
    return f"{'https' if api_tls(hostvars) else 'http'}://127.0.0.1:{api_port}"


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# The fleet CA as the role installs it on every host (roles/ark_runtime/tasks/tls.yml).
HOST_CA = "/etc/ark/tls/ca.crt"


def http_get_json(host, url: str) -> tuple[int, dict]:
    """GET from the host itself (python3 is always there: Ansible needs it); an https URL is
    verified against the fleet CA on the host."""
    script = (
        "import json,ssl,sys,urllib.request,urllib.error\n"
        f"ctx=ssl.create_default_context(cafile={HOST_CA!r}) if {url!r}.startswith('https')"
        " else None\n"
        "try:\n"
        f"    r=urllib.request.urlopen({url!r}, timeout=5, context=ctx)\n"
        "    print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode())\n"
    )
    out = host.check_output("python3 -c %s", script)
    status, _, body = out.partition("\n")
    return int(status), json.loads(body)


def http_get(host, url: str) -> tuple[int, dict[str, str], str]:
    """GET from the host itself without following redirects: status, headers (lower-case
    names) and body; status 0 and the error when no HTTP answer came (e.g. plain HTTP to a
    TLS port). https is verified against the fleet CA on the host."""
    script = (
        "import json,ssl,urllib.request,urllib.error\n"
        "class NoRedirect(urllib.request.HTTPRedirectHandler):\n"
        "    def redirect_request(self, *a, **k): return None\n"
        f"ctx=ssl.create_default_context(cafile={HOST_CA!r})\n"
        "opener=urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=ctx))\n"
        "try:\n"
        f"    r=opener.open({url!r}, timeout=5); out=(r.status, dict(r.headers), r.read())\n"
        "except urllib.error.HTTPError as e:\n"
        "    out=(e.code, dict(e.headers), e.read())\n"
        "except Exception as e:\n"
        "    out=(0, {}, repr(e).encode())\n"
        "print(json.dumps([out[0], {k.lower(): v for k, v in out[1].items()},"
        " out[2].decode('utf-8', 'replace')]))\n"
    )
    status, headers, body = json.loads(host.check_output("python3 -c %s", script))
    return status, headers, body


def reachable_and(host, command: str) -> bool:
    """True when the host answers and `command` succeeds; False while it is rebooting
    (the ssh backend raises on a refused connection)."""
    try:
        return host.run(command).rc == 0
    except RuntimeError:
        return False
