"""DEPLOY_02 smoke test: the compose stack built from this repo, up on a real Docker engine.

Builds the image (base = the lab's debootstrap root, `docker import`; Python = the
wheelhouse), brings Redis, the API and the four agents up, waits for every healthcheck, runs
a bar through Kyle -> Joey -> Kenny -> HRM and `ark trace`s its decision, checks the
containers run as non-root on a read-only root with their limits, then `down -v`. If the test
started dockerd it stops it, and the machine's netfilter state (FORWARD policy, ip_forward,
bridge-nf-call-iptables) must be what it was: a bridge like the lab's still forwards.

Run under the lab lock (dockerd touches machine-wide network state):
    flock /run/ark-lab.lock .venv/bin/python -m pytest tests/e2e/test_compose.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ark_ops.compose import engine
from ark_ops.compose import files as stack
from ark_runtime.bus.streams import DECISIONS_STREAM

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="starting dockerd needs root"),
    pytest.mark.skipif(not all(Path(p).exists() for p in
                               (engine.DOCKER, engine.DOCKERD, stack.DOCKER_COMPOSE)),
                       reason="the Docker engine is missing: apt-get install docker.io "
                              "docker-compose (./ops installs it)"),
]
AGENTS = ("kyle", "joey", "kenny", "hrm")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bridged_tcp_works() -> bool:
    """Two network namespaces on a fresh bridge, as the lab wires its hosts: does a TCP
    connection cross it? (FORWARD DROP + bridge-nf-call-iptables would stop it.)"""
    sh = """set -e
ip link add arkcbr0 type bridge; ip link set arkcbr0 up
for n in a b; do
  ip netns add arkc-$n; ip link add arkc-${n}0 type veth peer name arkc-${n}1
  ip link set arkc-${n}1 netns arkc-$n; ip link set arkc-${n}0 master arkcbr0 up
  ip -n arkc-$n link set lo up; ip -n arkc-$n link set arkc-${n}1 up
done
ip -n arkc-a addr add 10.251.77.1/24 dev arkc-a1; ip -n arkc-b addr add 10.251.77.2/24 dev arkc-b1
ip netns exec arkc-a python3 -c "import socket; s=socket.create_server(('10.251.77.1', 7077));
s.settimeout(10); c, _ = s.accept(); c.sendall(b'ok')" &
sleep 0.5
ip netns exec arkc-b python3 -c "import socket, sys
c = socket.create_connection(('10.251.77.1', 7077), timeout=5); sys.exit(c.recv(2) != b'ok')"
wait
"""
    cleanup = "ip netns del arkc-a; ip netns del arkc-b; ip link del arkcbr0"
    try:
        return subprocess.run(["sh", "-c", sh], capture_output=True, timeout=30).returncode == 0
    finally:
        subprocess.run(["sh", "-c", cleanup], capture_output=True, timeout=30)


container = engine.inspect


def exec_in(service: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    # One shell string: the secret is read inside the container, never passed in argv here.
    return engine.compose("exec", "-T", service, "sh", "-c", script, check=check, timeout=60)


def wait_healthy(services: tuple[str, ...]) -> dict[str, str]:
    try:
        return engine.wait_healthy(services)
    except stack.ComposeError as exc:
        logs = engine.compose("logs", "--tail", "20", check=False).stdout[-4000:]
        pytest.fail(f"{exc}\n{logs}")


REDIS = "REDISCLI_AUTH=$(cat /run/secrets/ARK_REDIS_PASSWORD) redis-cli --no-auth-warning "


@pytest.fixture(scope="module")
def up():
    before = engine.netfilter_state()
    eng = engine.Engine().__enter__()
    state = {"engine": eng, "before": before, "down": False}
    try:
        engine.build_image()
        stack.ensure_secrets()
        state["port"] = free_port()
        os.environ["ARK_COMPOSE_API_PORT"] = str(state["port"])
        engine.compose("up", "-d", timeout=240)
        state["health"] = wait_healthy(stack.ARK_SERVICES)
        state["during"] = engine.netfilter_state()
        state["bridge_during"] = bridged_tcp_works()
        yield state
    finally:
        take_down(state)


def take_down(state: dict) -> None:
    if state["down"]:
        return
    state["down"] = True
    try:
        state["down_result"] = engine.compose("down", "-v", "--remove-orphans", check=False,
                                              timeout=180)
    finally:
        state["engine"].stop()
        os.environ.pop("ARK_COMPOSE_API_PORT", None)


@pytest.mark.requirement("DEPLOY_02")
def test_every_service_reports_healthy(up):
    assert up["health"] == {s: "healthy" for s in stack.ARK_SERVICES}
    with socket.create_connection(("127.0.0.1", up["port"]), timeout=5) as conn:
        conn.sendall(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        reply = conn.recv(4096).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 200"), reply


@pytest.mark.requirement("DEPLOY_02")
def test_a_bar_becomes_a_decision_and_its_trace_spans_the_four_agents(up):
    deadline, first = time.monotonic() + 90, ""
    while time.monotonic() < deadline and not first:
        first = exec_in("redis", REDIS + f"XRANGE {DECISIONS_STREAM} - + COUNT 1").stdout
        time.sleep(1)
    assert first, f"no decision reached {DECISIONS_STREAM} within 90 s"
    lines = first.splitlines()
    cid = lines[lines.index("correlation_id") + 1]
    trace = engine.compose("exec", "-T", "api", "ark", "trace", cid, timeout=60).stdout
    for hop in ("/kyle", "/joey", "/kenny", "/hrm", "store/decisions"):
        assert hop in trace, f"{hop} missing from the trace of {cid}:\n{trace}"


@pytest.mark.requirement("DEPLOY_02")
def test_containers_are_non_root_read_only_limited_and_isolated(up):
    for service in stack.ARK_SERVICES:
        info = container(service)
        host = info["HostConfig"]
        assert info["Config"]["User"] == "10001:10001"
        assert (host["ReadonlyRootfs"], host["NanoCpus"], host["Memory"]) == \
            (True, 500_000_000, 256 * 1024 * 1024), service
        assert "ark_ark" in info["NetworkSettings"]["Networks"]
        pid1 = exec_in(service, "stat -c %u /proc/1; touch /opt/ark/x 2>&1; echo rc=$?").stdout
        assert pid1.splitlines()[0] == "10001", pid1
        assert "Read-only file system" in pid1 and "rc=1" in pid1, pid1
    wrote = exec_in("kyle", "touch /var/log/ark/.w && touch /run/ark/.w && echo ok").stdout
    assert wrote.strip() == "ok"  # the volumes and tmpfs that must be writable are
    net = json.loads(engine.run([engine.DOCKER, "network", "inspect", "ark_ark"], "inspect").stdout)
    assert net[0]["Internal"] is True


@pytest.mark.requirement("DEPLOY_02")
def test_secrets_are_in_no_command_line_and_no_container_config(up):
    values = [p.read_text().strip() for p in stack.ensure_secrets().values()]
    for service in stack.ARK_SERVICES:
        config = json.dumps(container(service)["Config"])
        argv = exec_in(service, "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '; true").stdout
        for value in values:
            assert value not in config and value not in argv, service
    for text in (stack.COMPOSE_FILE.read_text(), stack.ENV_FILE.read_text()):
        assert not any(value in text for value in values)


@pytest.mark.requirement("DEPLOY_02")
def test_down_stops_everything_and_leaves_the_lab_bridge_forwarding(up):
    assert up["bridge_during"], "a bridge between two namespaces stopped forwarding"
    assert up["during"] == up["before"], "dockerd changed the machine's netfilter state"
    started = up["engine"].started
    take_down(up)
    assert up["down_result"].returncode == 0, up["down_result"].stderr
    assert engine.netfilter_state() == up["before"]
    assert up["engine"].restored == []  # nothing needed putting back
    if started:
        assert not engine.engine_answers(), "the dockerd this test started is still running"
    assert bridged_tcp_works()
