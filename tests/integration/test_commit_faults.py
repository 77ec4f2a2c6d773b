"""Fault injection (issue #7 section 4, AGENT_02/TEST_01): real agent processes on a real
redis-server, reached through a loopback proxy that cuts their connections during commits,
over and over. Every pattern, plan and decision must still come out exactly
once, the same as the fault-free oracle (the domain code run in-process, which
test_pipeline proves equal to a fault-free run)."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time

import pytest
import redis
from conftest import Lab, wait_for
from helpers import dead, pending, processed_total, store_decisions
from test_pipeline import SYMBOLS, expected_outcomes, outcomes

from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector
from ark_runtime.planner import AccountConfig, PlanError, plan_trade

SEED, BARS = 11, 250


def expected_counts() -> tuple[int, int]:
    """(patterns, plans) for the feed, computed without the bus."""
    detector, account = PatternDetector(), AccountConfig(account_size=100000)
    patterns = plans = 0
    for bar in SyntheticAdapter(SYMBOLS, seed=SEED, bars=BARS):
        for pattern in detector.update(bar):
            patterns += 1
            try:
                plan_trade(pattern, account)
            except PlanError:
                continue
            plans += 1
    return patterns, plans


class CommitCuttingProxy:
    """A loopback TCP proxy in front of redis-server that cuts a connection when it carries a
    commit (EVALSHA/EVAL: the consumers' commit script; EXEC: Kyle's batch). Half the cuts
    drop the command before Redis sees it, half forward it and lose the reply, the two
    cases a dropped connection can leave an agent in."""

    COMMITS = (b"$7\r\nEVALSHA\r\n", b"$4\r\nEVAL\r\n", b"$4\r\nEXEC\r\n")

    def __init__(self, upstream_port: int, cut_probability: float) -> None:
        self.upstream_port = upstream_port
        self.p = cut_probability
        self.cuts = {"before": 0, "after": 0}
        self._rng = random.Random(SEED)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            doomed = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, doomed),
                             daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, doomed),
                             daemon=True).start()

    def _cut(self) -> str | None:
        with self._lock:
            if self._stop.is_set() or self._rng.random() >= self.p:
                return None
            mode = self._rng.choice(("before", "after"))
            self.cuts[mode] += 1
            return mode

    def _up(self, client: socket.socket, upstream: socket.socket,
            doomed: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                mode = self._cut() if any(c in data for c in self.COMMITS) else None
                if mode == "after":
                    doomed.set()  # the reply must not reach the client
                    upstream.sendall(data)
                    time.sleep(0.01)  # let Redis run it
                if mode:
                    break
                upstream.sendall(data)
        _close(client, upstream)

    def _down(self, upstream: socket.socket, client: socket.socket,
              doomed: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while (data := upstream.recv(65536)) and not doomed.is_set():
                client.sendall(data)
        _close(client, upstream)

    def __enter__(self) -> CommitCuttingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()  # from now on connections pass untouched
        self._thread.join(5)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()


def drained(r: redis.Redis) -> bool:
    """Kyle emitted the whole feed and every inbox is empty, checked in pipeline order (so
    nothing can still be on its way to an inbox already checked)."""
    cursor = next(r.scan_iter("ark:kyle:cursor:*"), None)
    if cursor is None or int(r.get(cursor) or 0) < BARS * len(SYMBOLS):
        return False
    return all(pending(r, n) == 0 for n in ("joey", "kenny", "hrm"))


@pytest.mark.requirement("AGENT_02")
@pytest.mark.requirement("TEST_01")
def test_dropped_connections_during_commits_lose_and_double_nothing(
        lab: Lab, r: redis.Redis, redis_server) -> None:
    expected = expected_outcomes(seed=SEED, bars=BARS)
    patterns, plans = expected_counts()
    assert patterns > 20 and len(expected) > 10
    with CommitCuttingProxy(redis_server.port, cut_probability=0.05) as proxy:
        # Small batches: a cut re-reads at most a few pending entries, keeping it quick.
        via_proxy = {"ARK_REDIS_PORT": str(proxy.port), "ARK_BUS_BATCH": "8"}
        procs = {name: lab.start(name, **via_proxy) for name in ("hrm", "kenny", "joey")}
        procs["kyle"] = lab.start("kyle", ARK_FEED="synthetic", ARK_FEED_SYMBOLS=",".join(SYMBOLS),
                                  ARK_FEED_SEED=str(SEED), ARK_FEED_BARS=str(BARS),
                                  ARK_FEED_RATE="300", **via_proxy)
        wait_for(lambda: drained(r), 90, interval=0.2,
                 what="the pipeline to drain despite dropped connections")
    assert proxy.cuts["before"] > 5 and proxy.cuts["after"] > 5, proxy.cuts
    assert outcomes(r) == expected  # raises on a plan decided twice
    assert processed_total(r, "kenny") == patterns  # every pattern handled exactly once
    assert processed_total(r, "hrm") == plans
    assert len(store_decisions(lab.env()["ARK_STATE_DIR"])) == len(expected)
    assert dead(r) == []
    for name, agent in procs.items():
        assert agent.proc.poll() is None, f"{name} exited: {agent.stderr()[-2000:]}"
        assert lab.stop(agent) == 0
