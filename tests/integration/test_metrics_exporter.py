"""LOG_03: `ark metrics` against real agents on a real redis-server, read back with
prometheus_client's own parser (the format Prometheus scrapes)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import REPO, Lab, free_port, wait_for
from helpers import decisions, store_decisions
from prometheus_client.parser import text_string_to_metric_families

from ark_runtime.bus.streams import DEAD_STREAM
from ark_runtime.host.snapshot.snapshots import create_snapshot

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        body = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return body, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


class Exporter:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ark_runtime.cli", "metrics",
             "--listen", f"127.0.0.1:{self.port}", *args],
            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def listening() -> bool:
            assert self.proc.poll() is None, self.proc.stderr.read()
            try:
                scrape(self.port)
            except OSError:
                return False
            return True

        wait_for(listening, 20, what="the exporter to listen")

    def stderr(self) -> str:
        self.proc.terminate()
        return self.proc.communicate(timeout=10)[1]

    def close(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        assert self.proc.wait(10) == 0


@pytest.fixture
def pipeline(lab: Lab, r) -> Iterator[Lab]:
    for name in ("hrm", "kenny", "joey"):
        lab.start(name)
    lab.start("kyle", ARK_FEED="synthetic", ARK_FEED_SYMBOLS="AAPL,MSFT",
              ARK_FEED_SEED="0", ARK_FEED_BARS="150")
    wait_for(lambda: len(decisions(r)) >= 3 and r.xlen("ark:stream:joey") >= 300, 60,
             what="decisions")
    # Let the pipeline drain: every inbox fully acked.
    wait_for(lambda: all(g["pending"] == 0 and (g.get("lag") or 0) == 0
                         for s in ("joey", "kenny", "hrm")
                         for g in r.xinfo_groups(f"ark:stream:{s}")), 30, what="drained")
    yield lab


@pytest.mark.requirement("LOG_03")
def test_exporter_reports_the_pipeline_the_store_and_the_host(pipeline: Lab, r) -> None:
    env = pipeline.env()
    r.xadd("ark:stream:joey", {"garbage": "not an envelope"})  # joey dead-letters it
    wait_for(lambda: r.xlen(DEAD_STREAM) == 1, 20, what="a dead letter")
    Path(env["ARK_LOG_DIR"], "heal.log").write_text(json.dumps(
        {"ts": datetime.now(UTC).isoformat(), "event": "heal_result", "dry_run": False,
         "safe": False}) + "\n")
    exporter = Exporter(env, "--bus", "--unit", "ark-agent@kyle.service")
    try:
        body, s = scrape(exporter.port)
        assert pipeline.redis.password not in body
        assert value(s, "ark_redis_up") == 1
        assert value(s, "ark_collector_up", collector="bus") == 1
        # No systemd on this machine: the units source says so, the scrape still answers.
        assert value(s, "ark_collector_up", collector="units") == 0
        assert value(s, "ark_collector_up", collector="state") == 1, exporter.stderr()
        assert value(s, "ark_collector_up", collector="store") == 1
        stored = store_decisions(env["ARK_STATE_DIR"])
        approved = sum(1 for d in stored if d["approved"])
        assert value(s, "ark_decisions_total", verdict="approved") == approved
        assert value(s, "ark_decisions_total", verdict="rejected") == len(stored) - approved
        assert value(s, "ark_agent_processed_total", agent="hrm") == len(stored)
        assert value(s, "ark_agent_processed_total", agent="joey") == r.xlen("ark:stream:joey")
        assert value(s, "ark_agent_dead_lettered_total", agent="joey") == 1
        assert value(s, "ark_stream_length", stream="joey") == r.xlen("ark:stream:joey")
        assert value(s, "ark_stream_group_pending", stream="joey", group="joey") == 0
        assert value(s, "ark_stream_group_lag", stream="joey", group="joey") == 0
        assert value(s, "ark_panic") == 0
        assert value(s, "ark_heal_last_safe") == 0
        # HRM publishes its risk state in Redis from its start; the exporter reads it there.
        assert value(s, "ark_hrm_breaker_tripped", breaker="daily_loss") == 0
        assert value(s, "ark_hrm_breaker_tripped", breaker="loss_streak") == 0
        assert value(s, "ark_hrm_open_pnl") == 0  # nothing open yet
        assert value(s, "ark_host_memory_bytes", kind="total") > 0
        assert value(s, "ark_tree_bytes", tree="log") > 0
        assert value(s, "ark_build_info", version=__import__("ark_runtime").__version__,
                     lock_sha="unknown",
                     python=".".join(map(str, sys.version_info[:3]))) == 1
        assert not any(name == "ark_snapshot_newest_verified_age_seconds" for name, _ in s)

        # The figures move with the host: a snapshot, a panic flag, another dead letter.
        state = Path(env["ARK_STATE_DIR"])
        snap = create_snapshot(store=state / "memory.db", root=state / "snapshots",
                               config_dir=state / "no-config")
        Path(env["ARK_STATE_DIR"], "PANIC").write_text("test\n")
        r.xadd("ark:stream:kenny", {"garbage": "2"})
        wait_for(lambda: r.xlen(DEAD_STREAM) == 2, 20, what="a second dead letter")
        _, s = scrape(exporter.port)
        assert value(s, "ark_panic") == 1
        age = value(s, "ark_snapshot_newest_verified_age_seconds", snapshot=snap.id)
        assert age is not None and 0 <= age < 60
        assert value(s, "ark_agent_dead_lettered_total", agent="joey") == 1
        assert value(s, "ark_agent_dead_lettered_total", agent="kenny") == 1
    finally:
        exporter.close()


@pytest.mark.requirement("LOG_03")
def test_redis_down_is_a_figure_not_a_failed_scrape(lab: Lab) -> None:
    env = lab.env(ARK_REDIS_PORT=str(free_port()))
    exporter = Exporter(env, "--bus")
    try:
        started = time.monotonic()
        _, s = scrape(exporter.port)
        assert time.monotonic() - started < 10
        assert value(s, "ark_redis_up") == 0
        assert value(s, "ark_collector_up", collector="state") == 1
    finally:
        exporter.close()


@pytest.mark.requirement("LOG_03")
@pytest.mark.parametrize("listen", ["0.0.0.0:9101", "[::]:9101", "127.0.0.1", "host:port"])
def test_a_wildcard_or_malformed_listen_address_is_refused(lab: Lab, listen: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "ark_runtime.cli", "metrics", "--listen", listen],
                          env=lab.env(), cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 64
    assert "--listen" in proc.stderr and "Traceback" not in proc.stderr
