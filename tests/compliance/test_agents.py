"""The agents on the host: supervised, locked, wired Kyle → Joey → Kenny → HRM → executor,
and HRM's breakers fed by the executor's closed positions (AGENT_04)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import testinfra
from conftest import wait_for

from ark_ops.fleet import trace as trace_fleet
from ark_ops.fleet.ssh import inventory_hosts
from ark_ops.placement import agent_of
from ark_runtime.pipeline import NAMES as AGENTS  # the one declaration

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
def test_agent_is_enabled_active_and_notify_supervised(host, agent, here):
    svc = host.service(f"ark-agent@{agent}.service")
    assert svc.is_enabled and svc.is_running
    props = svc.systemd_properties
    assert props["Type"] == "notify"
    assert props["WatchdogUSec"] not in ("0", "infinity")
    assert props["User"] == "ark"


@pytest.mark.requirement("SEC_01")
@pytest.mark.parametrize("agent", AGENTS)
def test_agent_gets_only_its_credential_domains(host, agent, here):
    env = process_env_names(host, main_pid(host, f"ark-agent@{agent}.service"))
    assert "ARK_REDIS_PASSWORD" in env  # infrastructure reaches every agent
    assert "ARK_API_SECRET" not in env  # the API's secret reaches the API only
    trading = {k for k in env if k.startswith("TRADING_")}
    if agent == "kenny":
        assert trading, "Kenny must get the trading domain"
    else:
        assert not trading, f"{agent} got trading credentials: {sorted(trading)}"
    assert not {k for k in env if k.startswith(("TELEGRAM_", "OPENAI_", "ANTHROPIC_"))}


# One process on the host stats every env file and checks it with `ark env check`'s own
# function: a process and three stat round trips per file took 8-11 s per host, in every
# verify run of the suite. Prints {relative name: [owner, group, mode, [error, ...]]}.
_ENV_FILES = r"""
import json, pwd, grp, stat, sys
from pathlib import Path
from ark_runtime.host.envcheck import REDIS_USER_DIR, check_env_file
root = Path("/etc/ark/env")
def entry(path, errors):
    st = path.stat()
    return [pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode), [str(p) for p in errors if p.severity == "error"]]
out = {}
for path in sorted(root.iterdir()):
    if path.name == REDIS_USER_DIR and path.is_dir():
        out[path.name] = entry(path, [])
        for user in sorted(path.iterdir()):
            out[f"{path.name}/{user.name}"] = entry(user, check_env_file(
                user, domains=["infrastructure"], overlay=True))
    else:
        out[path.name] = entry(path, check_env_file(
            path, domains=[path.name.removesuffix(".env")], environment="production"))
json.dump(out, sys.stdout)
"""


@pytest.mark.requirement("SEC_01")
@pytest.mark.runs_on("ark")
def test_env_files_are_0600_and_pass_the_schema(host):
    files = json.loads(host.check_output(f"{PYTHON} -c %s", _ENV_FILES))
    assert "infrastructure.env" in files and "trading.env" in files
    for name, (user, group, mode, errors) in files.items():
        # The redis/ directory (each unit's own Redis user, issue 19 §3) is 0700, the files
        # 0600, all root's.
        assert (user, group, mode) == ("root", "root", 0o700 if name == "redis" else 0o600), \
            name
        assert not errors, f"{name}: {errors}"


@pytest.mark.requirement("AGENT_04")
def test_deployed_ruleset_passes_its_schema(host):
    f = host.file("/etc/ark/HRM_RULESET.yaml")
    assert (f.user, f.group, f.mode) == ("root", "ark", 0o640)
    host.run_test(f"{PYTHON} -m ark_runtime.hrm check %s", f.path)


@pytest.mark.requirement("AGENT_04")
@pytest.mark.runs_agent("hrm")
def test_a_position_closed_on_the_host_moves_hrms_pnl(host, hostvars, pipeline):
    """The breakers are wired: the executor closed at least one paper position, HRM booked
    its P&L in the store and published it (the state the breakers trip on). Read-only; red
    when the executor is disabled or its closes never reach HRM."""

    def published() -> dict | None:
        out = host.run(WITH_ENV + f"{ARK} hrm risk --json")
        if out.rc not in (0, 1):  # 1: a breaker is tripped, which is still a state
            return None
        state = json.loads(out.stdout)
        return state if state["positions_closed"] >= 1 else None

    try:
        state = wait_for(published, timeout=180, what="a closed position in HRM's state")
    except AssertionError:
        # The executor may run on another host of the pipeline: name where, and its state
        # only when it is this host's to tell.
        where = pipeline.get("executor", "no host")
        if where == hostvars["inventory_hostname"]:
            state = host.run("systemctl is-active ark-agent@executor.service").stdout.strip()
            executor = f"ark-agent@executor is {state or 'unknown'} here"
        else:
            executor = f"the executor runs on {where}"
        raise AssertionError(
            "no paper position was ever closed: HRM's P&L cannot move and its breakers cannot "
            f"trip ({executor}; see `ark hrm risk`, `invoke logs --agent executor`)") from None
    query = "select count(*), total(pnl) from ledger where status = 'closed'"
    booked = host.check_output("sqlite3 -readonly %s %s", STORE, query).split("|")
    assert int(booked[0]) >= 1, "closes reached HRM's state but not its ledger"
    # The state HRM trips on is the ledger's P&L (taken at one moment: allow a close between).
    assert state["positions_closed"] <= int(booked[0]) + 5
    assert state["realised_pnl"] != 0 or float(booked[1]) == 0


@pytest.mark.requirement("INFRA_02")
@pytest.mark.parametrize("agent", ("kyle", "hrm"))
def test_second_instance_of_an_agent_is_refused_by_the_lock(host, agent, here):
    result = host.run(WITH_ENV + f"timeout 20 runuser -u ark -- {ARK} agent {agent}")
    assert result.rc == 75, result.stdout + result.stderr
    assert "already running" in (result.stdout + result.stderr).lower()
    assert host.service(f"ark-agent@{agent}.service").is_running


@pytest.mark.requirement("INFRA_02")
def test_the_lock_directory_is_the_agents(host):
    """The agents' flock files live in /run/ark, which must stay user ark's: were another
    user's unit to start with it (systemd hands a RuntimeDirectory to each starting unit's
    user), a second agent would lock under /var/lib/ark/locks instead and not be refused."""
    run = host.file("/run/ark")
    assert run.is_directory and (run.user, run.group) == ("ark", "ark"), (run.user, run.group)


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


def newest_decisions(host, limit: int) -> list[str]:
    return wait_for(
        lambda: host.run("sqlite3 %s 'select correlation_id from decisions "
                         f"order by decided_at desc limit {limit}'", STORE).stdout.split(),
        timeout=60, what="a decision in the store",
    )


@pytest.mark.requirement("AGENT_01")
@pytest.mark.requirement("TEST_01")
def test_a_decision_traces_back_to_kyle_through_every_agent(host, request, pipeline):
    if len(set(pipeline.values())) > 1:
        _check_the_flow_across_the_pipelines_hosts(request, pipeline)
        return
    cid = newest_decisions(host, 1)[0]
    hops, path = local_trace(host, cid)
    for step in STEPS:
        assert step in path, f"{step} missing from the trace of {cid}: {path}"
    assert path.index(("kyle", "emitted")) < path.index(("hrm", "decided"))
    kyle_emit = hops[path.index(("kyle", "emitted"))]
    assert kyle_emit["message_id"] == cid  # Kyle's bar starts the correlation


FLOW = ("kyle", "joey", "kenny", "hrm")


def _check_the_flow_across_the_pipelines_hosts(request, pipeline: dict[str, str]) -> None:
    """The pipeline is spread over hosts: a decision in its HRM host's store is traced
    across them (`invoke trace`'s reconstruction, over SSH), each hop on the host the
    placement gives that agent, Kyle -> Joey -> Kenny -> HRM in order."""
    inventory = request.config.getoption("ansible_inventory")
    store = testinfra.get_host(f"ansible://{pipeline['hrm']}", ansible_inventory=inventory)
    hosts = inventory_hosts(Path(inventory), ",".join(sorted(set(pipeline.values()))))
    looked: dict[str, list] = {}

    def one_complete_flow():
        # The newest decision's batch log line may not be written yet: look a little back.
        for cid in newest_decisions(store, 10):
            correlation, hops, errors = trace_fleet.reconstruct(hosts, cid)
            assert not errors, errors
            path = [(h.source.partition("/")[0], agent_of(h.source.rpartition("/")[2]),
                     h.event) for h in hops]
            looked[cid] = path
            # HRM's step of the flow is its decision: it may receive a fill from the executor
            # for the same bar (filled at that bar's open) before Kenny's plan reaches it.
            firsts = {a: next((i for i, (_, agent, event) in enumerate(path)
                               if agent == a and (a != "hrm" or event == "decided")), None)
                      for a in FLOW}
            if None not in firsts.values():
                return cid, path, firsts
        return None

    try:
        cid, path, firsts = wait_for(one_complete_flow, timeout=60, interval=2,
                                     what="a decision traced through all four agents")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; traces: {list(looked.items())[:2]}") from None
    assert [firsts[a] for a in FLOW] == sorted(firsts[a] for a in FLOW), (cid, path)
    for where, agent, event in path:
        placed = {h for i, h in pipeline.items() if agent_of(i) == agent}
        assert where in placed, f"{agent} {event} on {where}, placed on {placed}: {cid}"
