"""Scrape cost of `ark metrics` (LOG_03): latency and exporter CPU per scrape.

    .venv/bin/python benchmarks/metrics_scrape.py [--runs 3] [--scrapes 40]

Real redis-server, the four agents as real processes, the real exporter (`ark metrics
--bus`) read over HTTP like Prometheus does. Modes, side by side:
* baseline: a bare prometheus_client HTTP server (its default process/GC collectors only),
  the floor any Python exporter pays;
* idle: ARK's exporter, agents running, no feed;
* load: ARK's exporter while Kyle replays a feed as fast as the bus takes it (streams
  growing, every agent busy, the CPUs shared with the pipeline).
Per mode: scrape latency p50/p99 (ms) and exporter CPU time per scrape (ms, user+system
from psutil across the scrapes), medians over --runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import pipeline_throughput as pt  # noqa: E402

BASELINE = ("import sys, time; from prometheus_client import start_http_server; "
            "start_http_server(int(sys.argv[1]), addr='127.0.0.1'); time.sleep(3600)")


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exporter exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def measure(url: str, pid: int, scrapes: int) -> dict[str, float]:
    proc = psutil.Process(pid)
    urllib.request.urlopen(url, timeout=10).read()  # warm: first-scrape tallies, imports
    before = proc.cpu_times()
    latencies, size = [], 0
    for _ in range(scrapes):
        started = time.perf_counter()
        size = len(urllib.request.urlopen(url, timeout=10).read())
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.1)
    after = proc.cpu_times()
    cpu = (after.user - before.user + after.system - before.system) * 1000 / scrapes
    return {"p50": pt.pct(latencies, 0.5), "p99": pt.pct(latencies, 0.99), "cpu_ms": cpu,
            "bytes": size}


def start_agents(env: dict[str, str], feed_bars: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-m", "ark_runtime.cli", "agent", name],
                              env=env, stderr=subprocess.DEVNULL)
             for name in ("hrm", "kenny", "joey")]
    if feed_bars:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "ark_runtime.cli", "agent", "kyle"],
            env={**env, "ARK_FEED": "synthetic", "ARK_FEED_SYMBOLS": ",".join(pt.SYMBOLS[:5]),
                 "ARK_FEED_SEED": "7", "ARK_FEED_BARS": str(feed_bars)},
            stderr=subprocess.DEVNULL))
    return procs


def one_run(rds: pt.Redis, mode: str, scrapes: int) -> dict[str, float]:
    rds.client.flushall()
    root = Path(tempfile.mkdtemp(prefix="ark-bench-metrics-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "ARK_REDIS_PORT": str(rds.port),
           "ARK_REDIS_PASSWORD": rds.password, "ARK_STATE_DIR": str(root / "state"),
           "ARK_LOG_DIR": str(root / "log"), "ARK_RUN_DIR": str(root / "run"),
           "ARK_BUS_BLOCK_MS": "100"}
    port = pt.free_port()
    procs: list[subprocess.Popen] = []
    try:
        if mode == "baseline":
            exporter = subprocess.Popen([sys.executable, "-c", BASELINE, str(port)], env=env)
        else:
            procs = start_agents(env, feed_bars=20000 if mode == "load" else 0)
            exporter = subprocess.Popen(
                [sys.executable, "-m", "ark_runtime.cli", "metrics", "--bus",
                 "--listen", f"127.0.0.1:{port}"], env=env, stderr=subprocess.DEVNULL)
        procs.append(exporter)
        url = f"http://127.0.0.1:{port}/metrics"
        wait_http(url, exporter)
        if mode == "load":  # the pipeline busy before measuring
            deadline = time.monotonic() + 60
            while rds.client.xlen("ark:stream:joey") < 2000 and time.monotonic() < deadline:
                time.sleep(0.1)
        return measure(url, exporter.pid, scrapes)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["rm", "-rf", str(root)], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scrapes", type=int, default=40)
    args = ap.parse_args()
    rds = pt.Redis()
    results: dict[str, list[dict[str, float]]] = {}
    try:
        for run in range(args.runs):
            for mode in ("baseline", "idle", "load"):
                print(f"run {run + 1}/{args.runs}: {mode} ...", file=sys.stderr)
                results.setdefault(mode, []).append(one_run(rds, mode, args.scrapes))
    finally:
        rds.close()
    print(f"\n/metrics scrape cost (median of {args.runs} runs x {args.scrapes} scrapes; "
          f"{os.cpu_count()} CPUs)")
    print(f"{'mode':<10} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/scrape':>14} {'bytes':>8}")
    for mode, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"{mode:<10} {med['p50']:8.2f} {med['p99']:8.2f} {med['cpu_ms']:14.2f} "
              f"{med['bytes']:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
