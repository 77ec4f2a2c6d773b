"""INFRA_04: a deployed agent stopped by systemd (SIGTERM) finishes its in-flight work, acks
it and exits by itself within the unit's stop timeout, with nothing left pending for it."""

from __future__ import annotations

import json

import pytest
from conftest import agent_unit, wait_for

from ark_ops.placement import agent_of
from ark_runtime.pipeline import CONSUMERS

pytestmark = [pytest.mark.requirement("INFRA_04"), pytest.mark.runs_on("ark_agents")]

WITH_ENV = "set -a; . /etc/ark/env/infrastructure.env; set +a; "
PYTHON = "/opt/ark/venv/bin/python"

# The entries of the instance's inbox still pending for the consumer this host's unit uses
# (the root tools' Redis login, TLS where the host uses it).
PENDING_FOR = """import json, sys
from ark_runtime.bus.streams import connect, default_consumer, inbox
agent, instance = sys.argv[1], sys.argv[2]
r = connect()
consumer = default_consumer(instance)
rows = r.xpending_range(inbox(instance), agent, "-", "+", 1000, consumername=consumer)
print(json.dumps({"consumer": consumer, "pending": len(rows)}))"""


def _props(host, unit: str) -> dict[str, str]:
    keys = ("ActiveState", "Result", "ExecMainCode", "ExecMainStatus", "TimeoutStopUSec",
            "ActiveExitTimestampMonotonic", "InactiveEnterTimestampMonotonic")
    out = host.check_output("systemctl show %s -p %s", unit, ",".join(keys))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _usec(text: str) -> int:
    """systemd's TimeoutStopUSec as shown ('1min 30s', '45s', '500ms') in microseconds."""
    units = {"min": 60_000_000, "s": 1_000_000, "ms": 1_000, "us": 1}
    total = 0
    for word in text.split():
        number = word.rstrip("minus")
        total += int(number) * units[word[len(number):]]
    return total


@pytest.mark.disruptive
def test_stopped_agents_finish_their_work_and_exit_within_their_stop_timeout(
        host, agent_instances):
    assert agent_instances, "this ark_agents host runs no agent instance"
    units = {agent_unit(i): i for i in agent_instances}
    # Each run being stopped, to read its own journal lines whatever earlier runs logged.
    invocations = {u: host.check_output("systemctl show -p InvocationID --value %s", u).strip()
                   for u in units}
    assert all(invocations.values()), f"not every agent is running before the stop: {invocations}"
    # One stop for all of them, as `systemctl stop ark.target` does: SIGTERM mid-flow.
    host.run_test("systemctl stop " + " ".join(units))
    try:
        for unit, instance in units.items():
            props = _props(host, unit)
            # Exited by itself with 0: not killed by the signal, not by the stop timeout.
            assert props["ActiveState"] == "inactive", (unit, props)
            assert props["Result"] == "success", (unit, props)
            assert (props["ExecMainCode"], props["ExecMainStatus"]) == ("1", "0"), (unit, props)
            took_us = (int(props["InactiveEnterTimestampMonotonic"])
                       - int(props["ActiveExitTimestampMonotonic"]))
            assert 0 <= took_us < _usec(props["TimeoutStopUSec"]), (unit, took_us, props)
            log = host.check_output("journalctl -q -o cat _SYSTEMD_INVOCATION_ID=%s",
                                    invocations[unit])
            assert "stopped cleanly" in log, (unit, log[-1500:])
            agent = agent_of(instance)
            if agent in CONSUMERS:
                out = host.check_output(WITH_ENV + PYTHON + " -c %s %s %s",
                                        PENDING_FOR, agent, instance)
                got = json.loads(out.strip().splitlines()[-1])
                assert got["pending"] == 0, (unit, got)
    finally:
        host.run_test("systemctl start " + " ".join(units))
    for unit in units:
        wait_for(lambda u=unit: host.service(u).is_running, 120, 1, what=f"{unit} to start again")
