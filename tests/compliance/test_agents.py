"""The four agents on the host: supervised, locked, wired Kyle → Joey → Kenny → HRM."""

from __future__ import annotations

import json

import pytest
from conftest import wait_for

AGENTS = ("kyle", "joey", "kenny", "hrm")
STORE = "/var/lib/ark/memory.db"
ARK = "/opt/ark/venv/bin/ark"
PYTHON = "/opt/ark/venv/bin/python"
# Run an ark command with the environment the units get (root reads the env files).
WITH_ENV = "set -a; . /etc/ark/env/infrastructure.env; set +a; "

# The agents run on the ark_agents hosts only (test_placement.py checks the others).
pytestmark = pytest.mark.runs_on("ark_agents")


def main_pid(host, unit: str) -> int:
    return int(host.service(unit).systemd_properties["MainPID"])


def process_env_names(host, pid: int) -> set[str]:
    """The names of a process's environment variables; the values (secrets among them)
    are cut off on the host and never reach a report."""
    raw = host.check_output("tr '\\0' '\\n' < /proc/%s/environ | cut -d= -f1", str(pid))
    return set(raw.split())


@pytest.mark.requirement("INFRA_01")
@pytest.mark.parametrize("agent", AGENTS)
def test_agent_is_enabled_active_and_notify_supervised(host, agent):
    svc = host.service(f"ark-agent@{agent}.service")
    assert svc.is_enabled and svc.is_running
    props = svc.systemd_properties
    assert props["Type"] == "notify"
    assert props["WatchdogUSec"] not in ("0", "infinity")
    assert props["User"] == "ark"


@pytest.mark.requirement("SEC_01")
@pytest.mark.parametrize("agent", AGENTS)
def test_agent_gets_only_its_credential_domains(host, agent):
    env = process_env_names(host, main_pid(host, f"ark-agent@{agent}.service"))
    assert "ARK_REDIS_PASSWORD" in env  # infrastructure reaches every agent
    assert "ARK_API_SECRET" not in env  # the API's secret reaches the API only
    trading = {k for k in env if k.startswith("TRADING_")}
    if agent == "kenny":
        assert trading, "Kenny must get the trading domain"
    else:
        assert not trading, f"{agent} got trading credentials: {sorted(trading)}"
    assert not {k for k in env if k.startswith(("TELEGRAM_", "OPENAI_", "ANTHROPIC_"))}


@pytest.mark.requirement("SEC_01")
@pytest.mark.runs_on("ark")
def test_env_files_are_0600_and_pass_the_schema(host):
    files = host.check_output("ls /etc/ark/env").split()
    assert "infrastructure.env" in files and "trading.env" in files
    for name in files:
        f = host.file(f"/etc/ark/env/{name}")
        assert (f.user, f.group, f.mode) == ("root", "root", 0o600), name
        domain = name.removesuffix(".env")
        result = host.run(f"{ARK} env check /etc/ark/env/{name} --domain {domain} "
                          "--environment production")
        assert result.rc == 0, result.stdout + result.stderr


@pytest.mark.requirement("AGENT_04")
def test_deployed_ruleset_passes_its_schema(host):
    f = host.file("/etc/ark/HRM_RULESET.yaml")
    assert (f.user, f.group, f.mode) == ("root", "ark", 0o640)
    host.run_test(f"{PYTHON} -m ark_runtime.hrm check %s", f.path)


@pytest.mark.requirement("INFRA_02")
@pytest.mark.parametrize("agent", ("kyle", "hrm"))
def test_second_instance_of_an_agent_is_refused_by_the_lock(host, agent):
    result = host.run(WITH_ENV + f"timeout 20 runuser -u ark -- {ARK} agent {agent}")
    assert result.rc == 75, result.stdout + result.stderr
    assert "already running" in (result.stdout + result.stderr).lower()
    assert host.service(f"ark-agent@{agent}.service").is_running


STEPS = (("kyle", "emitted"), ("joey", "received"), ("kenny", "received"),
         ("hrm", "decided"), ("decisions", "decision"))


def local_trace(host, cid: str) -> tuple[list[dict], list[tuple[str, str]]]:
    # Exit 1 (no log line here mentions it) is an empty trace: on a host that shares its
    # Redis, the newest decision's batch log line may not be written yet.
    out = host.run(WITH_ENV + f"{ARK} trace --json %s", cid)
    assert out.rc in (0, 1), out.stderr
    hops = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    # source is "<host>/<agent>" for log hops, "store/decisions" for the stored decision
    return hops, [(h["source"].rsplit("/", 1)[-1], h["event"]) for h in hops]


@pytest.mark.requirement("AGENT_01")
@pytest.mark.requirement("TEST_01")
def test_a_decision_traces_back_to_kyle_through_every_agent(host, hostvars):
    # With several ark_agents hosts on one Redis a flow may hop between hosts (`invoke
    # trace` follows those, tests/e2e/test_split_topology.py); `ark trace` reads this
    # host's logs, so look among the newest decisions for a flow that stayed here.
    many = len(hostvars.get("groups", {}).get("ark_agents", [])) > 1
    limit = 50 if many else 1
    cids = wait_for(
        lambda: host.run("sqlite3 %s 'select correlation_id from decisions "
                         f"order by decided_at desc limit {limit}'", STORE).stdout.split(),
        timeout=60, what="a decision in the store",
    )
    traces = [local_trace(host, cid) + (cid,) for cid in cids]
    complete = [t for t in traces if all(step in t[1] for step in STEPS)]
    if many:
        # Every agent host runs a Kyle on the same feed today: this host's Kyle may log its
        # (deduplicated) copy of a bar after another host's flow of it has already decided.
        # Such a trace is not this host's flow; one whose Kyle hop came first is.
        complete = [t for t in complete
                    if t[1].index(("kyle", "emitted")) < t[1].index(("hrm", "decided"))]
    if many and not complete:
        # Every recent flow decided here began or passed on another host: this host's part
        # of one (HRM's verdict and the stored decision) must still be here, in order. (Not
        # necessarily the newest: its batch log line may land just after the store commit.)
        own = [t for t in traces if ("hrm", "decided") in t[1] and ("decisions", "decision")
               in t[1]]
        assert own, f"no recent decision here has its HRM hop in this host's log: {traces[:3]}"
        hops, path, cid = own[0]
        order = [a for a, _ in path if a in ("kyle", "joey", "kenny", "hrm")]
        rank = {"kyle": 0, "joey": 1, "kenny": 2, "hrm": 3}
        assert order == sorted(order, key=rank.get), (cid, path)
        return
    hops, path, cid = complete[0] if complete else traces[0]
    for step in STEPS:
        assert step in path, f"{step} missing from the trace of {cid}: {path}"
    assert path.index(("kyle", "emitted")) < path.index(("hrm", "decided"))
    kyle_emit = hops[path.index(("kyle", "emitted"))]
    assert kyle_emit["message_id"] == cid  # Kyle's bar starts the correlation
