"""INFRA_02 / INFRA_04 / AGENT_02 / TEST_01: killed, stopped, doubled and paused agents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime

import pytest
from conftest import REPO, Lab, wait_for
from helpers import dead, decisions, envelopes, log_lines, pending
from test_pipeline import SYMBOLS, expected_outcomes, outcomes, start_pipeline

from ark_runtime.agents.joey import ACC_KEY, LEGACY_SIDE_KEY, LEGACY_WINDOW_KEY, WINDOW_KEY
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.errors import ErrorBus, pauses, recent
from ark_runtime.bus.streams import connect, inbox
from ark_runtime.config import RedisSettings
from ark_runtime.lock import EXIT_LOCKED
from ark_runtime.market import Bar, SyntheticAdapter
from ark_runtime.patterns import PatternDetector


def fill_kenny_inbox(r, bars: int, seed: int = 3) -> list[Envelope]:
    """What Joey would emit for this feed, written straight into Kenny's inbox."""
    detector, sent = PatternDetector(), []
    for bar in SyntheticAdapter(SYMBOLS, seed=seed, bars=bars):
        for pattern in detector.update(bar):
            env = Envelope.new("pattern.detected", pattern, from_agent="joey", to_agent="kenny")
            r.xadd(inbox("kenny"), env.to_fields())
            sent.append(env)
    return sent


def consumer_pending(r, agent: str, consumer: str) -> int:
    for c in r.xinfo_consumers(inbox(agent), agent):
        if c["name"] == consumer:
            return int(c["pending"])
    return 0


@pytest.mark.requirement("TEST_01")
@pytest.mark.requirement("AGENT_02")
def test_sigkilled_consumer_messages_reclaimed_exactly_once(lab: Lab, r) -> None:
    sent = fill_kenny_inbox(r, bars=600)
    assert len(sent) > 100
    a = lab.start("kenny", host="host-a", ARK_CONSUMER_NAME="kenny@host-a", ARK_BUS_BATCH="16")
    # Freeze A the moment it holds unacked messages, then kill it: it dies mid-batch. On a
    # busy machine A can finish the whole inbox between two looks (this loop then spun
    # until the suite's timeout): it gets more work, until it is caught holding some.
    deadline, seed = time.monotonic() + 120, 3
    while True:
        if consumer_pending(r, "kenny", "kenny@host-a") > 0:
            os.kill(a.proc.pid, signal.SIGSTOP)
            if consumer_pending(r, "kenny", "kenny@host-a") > 0:
                break
            os.kill(a.proc.pid, signal.SIGCONT)
        elif pending(r, "kenny") == 0:
            seed += 1
            sent += fill_kenny_inbox(r, bars=600, seed=seed)
        assert a.proc.poll() is None
        assert time.monotonic() < deadline, "A was never caught holding unacked messages"
    held = consumer_pending(r, "kenny", "kenny@host-a")
    a.proc.kill()
    assert a.proc.wait(5) == -signal.SIGKILL
    done_before = r.xlen(inbox("hrm"))
    assert done_before < len(sent), "A finished everything before it was killed"

    b = lab.start("kenny", host="host-b", ARK_CONSUMER_NAME="kenny@host-b",
                  ARK_BUS_CLAIM_MIN_IDLE_MS="300")
    wait_for(lambda: pending(r, "kenny") == 0, 30, what="kenny inbox drained")
    plans = envelopes(r, inbox("hrm"))
    # Exactly once in effect: one plan per pattern, none missing, none doubled.
    assert Counter(p.causation_id for p in plans) == Counter(e.message_id for e in sent)
    assert len({p.message_id for p in plans}) == len(plans)
    reclaimed = [ln for ln in log_lines(b.env["ARK_LOG_DIR"], "kenny")
                 if ln.get("event") == "reclaimed"]
    assert sum(ln["count"] for ln in reclaimed) >= held
    assert consumer_pending(r, "kenny", "kenny@host-a") == 0


@pytest.mark.requirement("INFRA_04")
@pytest.mark.requirement("TEST_01")
def test_sigterm_during_load_loses_nothing(lab: Lab, r) -> None:
    expected = expected_outcomes(seed=5, bars=400)
    procs = start_pipeline(lab, ARK_FEED_SEED="5", ARK_FEED_BARS="400", ARK_FEED_RATE="800")
    for round_ in range(2):
        # Stop every agent mid-flow (Kyle included), then bring them back.
        wait_for(lambda n=round_: len(decisions(r)) > (n + 1) * len(expected) // 4,
                 30, what="decisions flowing")
        for name in ("kyle", "joey", "kenny", "hrm"):
            agent = procs[name]
            started = time.monotonic()
            assert lab.stop(agent, timeout=10) == 0, agent.stderr()[-2000:]
            assert time.monotonic() - started < 5
            assert agent.notify.seen("STOPPING=1")
            events = [ln.get("event") for ln in log_lines(agent.env["ARK_LOG_DIR"], name)]
            assert events[-1] in ("stopped", "summary")
        bars_so_far = r.get(next(r.scan_iter("ark:kyle:cursor:*")))
        assert 0 < int(bars_so_far) < 1200
        for name in ("hrm", "kenny", "joey", "kyle"):
            procs[name] = lab.start(name, **{k: v for k, v in procs[name].env.items()
                                              if k.startswith("ARK_FEED")})
    try:
        wait_for(lambda: len(decisions(r)) >= len(expected), 30, what="all decisions")
    finally:
        got = outcomes(r)  # raises on a plan decided twice
        missing = sorted(set(expected) - set(got))
        print("DIAG missing", len(missing), missing[:5], "extra", set(got) - set(expected))
        print("DIAG dead", dead(r)[:3])
        print("DIAG errors", [e.payload for e in recent(r, 10)])
        for n in ("joey", "kenny", "hrm"):
            print("DIAG", n, r.xinfo_groups(inbox(n)), r.xlen(inbox(n)))
        print("DIAG cursor", [r.get(k) for k in r.scan_iter("ark:kyle:cursor:*")])
    assert set(got) == set(expected)
    kyle_bars = [ln["emitted_id"] for ln in log_lines(lab.env()["ARK_LOG_DIR"], "kyle")
                 if ln.get("event") == "emitted"]
    assert len(kyle_bars) == len(set(kyle_bars)) == 1200  # no bar emitted twice or skipped
    for name in ("joey", "kenny", "hrm"):
        assert pending(r, name) == 0


@pytest.mark.requirement("INFRA_02")
def test_second_instance_refused_and_no_stale_lock(lab: Lab, r) -> None:
    first = lab.start("joey")
    env = lab.env()
    started = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "ark_runtime.cli", "agent", "joey"],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=20)
    assert second.returncode == EXIT_LOCKED == 75
    assert time.monotonic() - started < 5
    assert "joey is already running" in second.stderr
    assert f"pid {first.proc.pid}" in second.stderr
    # Another host (own run dir) may run its own joey: the lock is per host and component.
    lab.start("joey", host="host2", ARK_CONSUMER_NAME="joey@host2")
    # A crash (SIGKILL) cannot leave a stale lock: the kernel drops it with the process.
    first.proc.kill()
    first.proc.wait(5)
    again = lab.start("joey")
    assert again.proc.poll() is None


@pytest.mark.requirement("AGENT_02")
def test_critical_error_pauses_upstream_until_cleared(lab: Lab, r, redis_server) -> None:
    kyle = lab.start("kyle", ARK_FEED="synthetic", ARK_FEED_BARS="2000", ARK_FEED_RATE="200",
                     ARK_FEED_SYMBOLS="AAPL")
    joey = lab.start("joey")
    wait_for(lambda: r.xlen(inbox("kenny")) > 0 or r.xlen(inbox("joey")) > 20,
             what="flow started")
    bus = ErrorBus(connect(RedisSettings(port=redis_server.port,
                                         password=redis_server.password)), "kenny")
    bus.publish("critical", "StoreUnavailable", "cannot write decisions")
    assert pauses(r)["kenny"]["agents"] == ["kyle", "joey"]

    def paused(agent) -> bool:
        return any(ln.get("event") == "paused"
                   for ln in log_lines(agent.env["ARK_LOG_DIR"], agent.name))

    wait_for(lambda: paused(kyle) and paused(joey), what="kyle and joey to pause")
    frozen_cursor = r.get(next(r.scan_iter("ark:kyle:cursor:*")))
    frozen_pending = r.xinfo_groups(inbox("joey"))[0]["entries-read"]
    time.sleep(0.5)  # absence of progress can only be observed over time
    assert r.get(next(r.scan_iter("ark:kyle:cursor:*"))) == frozen_cursor
    assert r.xinfo_groups(inbox("joey"))[0]["entries-read"] == frozen_pending

    env = lab.env()
    status = subprocess.run([sys.executable, "-m", "ark_runtime.cli", "errors", "status"],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=20)
    assert status.returncode == 1  # ExitCode.FAILURE: the status check found a pause
    assert "PAUSED by kenny" in status.stdout and "kyle, joey" in status.stdout
    clear = subprocess.run([sys.executable, "-m", "ark_runtime.cli", "errors", "clear",
                            "--reason", "store repaired"],
                           env=env, cwd=REPO, capture_output=True, text=True, timeout=20)
    assert clear.returncode == 0 and "cleared pause set by kenny" in clear.stdout
    assert pauses(r) == {}
    wait_for(lambda: r.get(next(r.scan_iter("ark:kyle:cursor:*"))) != frozen_cursor,
             what="kyle to resume")
    wait_for(lambda: any(ln.get("event") == "resumed"
                         for ln in log_lines(joey.env["ARK_LOG_DIR"], "joey")),
             what="joey to resume")
    types = [e.type for e in recent(r, 50)]
    assert types.index("control.pause") < types.index("control.resume")
    listing = subprocess.run([sys.executable, "-m", "ark_runtime.cli", "errors", "list"],
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=20)
    assert listing.returncode == 0
    assert "critical" in listing.stdout and "StoreUnavailable: cannot write decisions" \
        in listing.stdout
    assert "control.pause" in listing.stdout and "control.resume" in listing.stdout
    resume = [e for e in recent(r, 50) if e.type == "control.resume"][0]
    assert resume.payload["reason"] == "store repaired"
    assert resume.payload["by"].startswith("operator:")


@pytest.mark.requirement("SEC_02")
def test_bad_configuration_refused_with_clear_exit_codes(lab: Lab, r, tmp_path) -> None:
    def run(*argv: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ark_runtime.cli", *argv],
                              env=lab.env(**extra), cwd=REPO, capture_output=True, text=True,
                              timeout=20)

    outside = run("agent", "kyle", ARK_FEED="replay", ARK_FEED_PATH="/etc/passwd")
    assert outside.returncode == 78
    assert "ARK_FEED_PATH" in outside.stderr and "outside" in outside.stderr
    traversal = run("agent", "kyle", ARK_FEED_PATH="../../etc/passwd.jsonl")
    assert traversal.returncode == 78 and "'..'" in traversal.stderr
    assert run("agent", "kyle", ARK_FEED_RATE="fast").returncode == 78
    unknown = run("agent", "mallory")
    assert unknown.returncode == 64 and "unknown agent" in unknown.stderr  # ExitCode.USAGE
    bad_env = run("agent", "joey", ARK_BUS_BATCH="many", ARK_REDIS_PASSWORD="zq-" + "s" * 20)
    assert bad_env.returncode == 78 and "ARK_BUS_BATCH" in bad_env.stderr
    short = run("agent", "joey", ARK_REDIS_PASSWORD="zq-short-secret")
    assert short.returncode == 78 and "ARK_REDIS_PASSWORD" in short.stderr
    assert "zq-short-secret" not in short.stderr + short.stdout
    # The refused start is reported on the error bus, so operators see it there too.
    assert any(e.payload["error"] == "ConfigError" for e in recent(r, 20))
    assert pauses(r) == {}  # the source does not pause itself over its own config
    hrm = run("agent", "hrm", ARK_HRM_RULESET=str(tmp_path / "missing.yaml"))
    assert hrm.returncode == 78 and "ARK_HRM_RULESET" in hrm.stderr
    assert pauses(r)["hrm"]["agents"] == ["kyle", "joey", "kenny"]
    # A ruleset the parser chokes on is configuration too: 78 (not restarted), no traceback.
    odd = tmp_path / "odd.yaml"
    odd.write_text("rules: [null]\n")
    hrm = run("agent", "hrm", ARK_HRM_RULESET=str(odd))
    assert hrm.returncode == 78 and "Traceback" not in hrm.stderr


@pytest.mark.requirement("TEST_01")
@pytest.mark.requirement("INFRA_04")
def test_sigkilled_stateful_joey_resumes_with_identical_output(lab: Lab, r) -> None:
    bars = list(SyntheticAdapter(SYMBOLS, seed=9, bars=400))
    detector, oracle = PatternDetector(), []
    for bar in bars:
        oracle += [(p.symbol, p.kind, p.ts.isoformat(), p.indicators)
                   for p in detector.update(bar)]
    lab.start("kyle", ARK_FEED="synthetic", ARK_FEED_SYMBOLS=",".join(SYMBOLS),
              ARK_FEED_SEED="9", ARK_FEED_BARS="400")
    joey = lab.start("joey", ARK_BUS_BATCH="16")
    consumer = joey.env.get("ARK_CONSUMER_NAME") or f"joey@{os.uname().nodename}"
    deadline = time.monotonic() + 60  # a miss fails this test, not the whole session
    while True:  # kill it while it holds unacked bars, part way through the feed
        assert time.monotonic() < deadline, "never caught Joey holding unacked bars"
        if consumer_pending(r, "joey", consumer) > 0 and r.xlen(inbox("kenny")) > 10:
            os.kill(joey.proc.pid, signal.SIGSTOP)
            if consumer_pending(r, "joey", consumer) > 0:
                break
            os.kill(joey.proc.pid, signal.SIGCONT)
        assert joey.proc.poll() is None
    joey.proc.kill()
    joey.proc.wait(5)
    lab.start("joey")  # same host, same consumer name: re-reads its own pending first
    wait_for(lambda: pending(r, "joey") == 0 and r.get(next(r.scan_iter("ark:kyle:cursor:*")))
             == "1200", 30, what="joey to drain the feed")
    got = [(e.payload["symbol"], e.payload["kind"], e.payload["ts"].replace("Z", "+00:00"),
            e.payload["indicators"]) for e in envelopes(r, inbox("kenny"))]
    # Same patterns, same order, none doubled, none lost, and the same indicator floats bit
    # for bit: the restarted Joey restored its accumulators (saved with each bar), not only
    # its windows.
    assert got == oracle
    saved = r.hgetall(ACC_KEY)
    assert sorted(saved) == sorted(SYMBOLS)
    for symbol, raw in saved.items():
        last = Bar.model_validate_json(r.lindex(f"{WINDOW_KEY}{symbol}", -1))
        assert datetime.fromisoformat(json.loads(raw)["ts"]) == last.ts


@pytest.mark.requirement("AGENT_02")
@pytest.mark.requirement("TEST_01")
def test_redis_outage_is_retried_with_backoff_and_loses_nothing(durable_redis, tmp_path) -> None:
    server, down, up = durable_redis
    r = server.client()
    world = Lab(server, tmp_path / "world")
    try:
        bars = list(SyntheticAdapter(SYMBOLS, seed=11, bars=300))
        detector, oracle = PatternDetector(), []
        for bar in bars:
            oracle += [(p.symbol, p.kind, p.ts.isoformat()) for p in detector.update(bar)]
        kyle = world.start("kyle", ARK_FEED="synthetic", ARK_FEED_SYMBOLS=",".join(SYMBOLS),
                           ARK_FEED_SEED="11", ARK_FEED_BARS="300", ARK_FEED_RATE="400")
        joey = world.start("joey")
        wait_for(lambda: r.xlen(inbox("kenny")) > 5, what="patterns flowing")
        down()  # both agents lose Redis mid-stream, long enough for redis-py to give up

        def retrying(agent) -> bool:
            return any(ln.get("event") == "redis_retry"
                       for ln in log_lines(agent.env["ARK_LOG_DIR"], agent.name))

        wait_for(lambda: retrying(kyle) and retrying(joey), 30, what="agents backing off")
        up()
        wait_for(lambda: r.get(next(r.scan_iter("ark:kyle:cursor:*"), "none")) == "900"
                 and pending(r, "joey") == 0, 60, what="the feed to finish after the outage")
        got = [(e.payload["symbol"], e.payload["kind"], e.payload["ts"].replace("Z", "+00:00"))
               for e in envelopes(r, inbox("kenny"))]
        if got != oracle:
            print("DIAG missing", [x for x in oracle if x not in got][:5],
                  "extra", [x for x in got if x not in oracle][:5], len(got), len(oracle))
            print("DIAG dup", [x for x in set(got) if got.count(x) > 1][:5])
        assert got == oracle
        for agent in (kyle, joey):
            assert agent.proc.poll() is None  # rode it out instead of crashing
    finally:
        world.close()


@pytest.mark.requirement("INFRA_04")
def test_joey_upgraded_from_the_untagged_key_names_keeps_its_windows(lab: Lab, r) -> None:
    # Windows saved under the names used before the keys carried the inbox's hash tag are
    # read once after the upgrade: the patterns of the next bars come out as if Joey never
    # stopped (without them, the first 31 bars of each symbol would be warm-up).
    bars = list(SyntheticAdapter(SYMBOLS, seed=11, bars=200))
    cut = len(bars) // 2
    detector = PatternDetector()
    for bar in bars[:cut]:
        detector.update(bar)
    for symbol in SYMBOLS:
        r.rpush(f"{LEGACY_WINDOW_KEY}{symbol}",
                *(b.model_dump_json() for b in detector.window.bars(symbol)))
        side = detector.cross_side(symbol)
        if side is not None:
            r.hset(LEGACY_SIDE_KEY, symbol, str(side))
    oracle = [(p.symbol, p.kind, p.ts.isoformat()) for bar in bars[cut:]
              for p in detector.update(bar)]
    assert oracle
    for bar in bars[cut:]:
        r.xadd(inbox("joey"), Envelope.new("market.bar", bar, from_agent="kyle",
                                           to_agent="joey").to_fields())
    lab.start("joey")
    wait_for(lambda: pending(r, "joey") == 0 and r.xinfo_groups(inbox("joey"))[0]["lag"] == 0,
             30, what="joey to take every bar")
    got = [(e.payload["symbol"], e.payload["kind"], e.payload["ts"].replace("Z", "+00:00"))
           for e in envelopes(r, inbox("kenny"))]
    assert got == oracle
