"""End-to-end pipeline benchmark: the four agents as real processes on a real redis-server.

    .venv/bin/python benchmarks/pipeline_throughput.py [--runs 3] [--bars 2000] [--symbols 5]

Measures, median of --runs:
* saturated: Kyle replays a synthetic feed as fast as the bus takes it; throughput is plans
  decided per second (and bars per second through Joey), first Kyle emit -> last HRM decision;
* paced: Kyle at --rate bars/s, well below saturation, so latency is the pipeline's own;
* latency per plan: Kyle's emit (its log timestamp, taken just before the EXEC) -> HRM's
  decision (the time in the `ark:stream:decisions` entry id), p50 and p99;
* the ceiling: `redis-benchmark ... XADD` on the same redis-server, 1 and 50 clients.

Agents run in their production configuration (JSON logs to a file for every hop, fsync'd
SQLite for every decision), so the figures include that cost.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ark_runtime.bus.streams import DECISIONS_STREAM  # noqa: E402
from ark_runtime.hrm import RuleEngine, load_ruleset  # noqa: E402
from ark_runtime.market import SyntheticAdapter  # noqa: E402
from ark_runtime.patterns import PatternDetector  # noqa: E402
from ark_runtime.planner import AccountConfig, PlanError, plan_trade  # noqa: E402

SYMBOLS = ["AAPL", "MSFT", "NVDA", "BTC-USD", "ETH-USD", "BRK.B", "AMZN", "TSLA"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected_plans(symbols: list[str], bars: int) -> int:
    detector, account, n = PatternDetector(), AccountConfig(account_size=100000), 0
    for bar in SyntheticAdapter(symbols, seed=7, bars=bars):
        for pattern in detector.update(bar):
            try:
                plan_trade(pattern, account)
                n += 1
            except PlanError:
                pass
    RuleEngine(load_ruleset())  # fail here, not in the middle of a run, on a bad ruleset
    return n


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Redis:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ark-bench-redis-"))
        self.port, self.password = free_port(), secrets.token_hex(12)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--requirepass", self.password, "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, password=self.password, decode_responses=True)
        for _ in range(200):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_pipeline(rds: Redis, symbols: list[str], bars: int, expected: int,
                 rate: float) -> dict[str, float]:
    rds.client.flushall()
    root = Path(tempfile.mkdtemp(prefix="ark-bench-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "ARK_REDIS_PORT": str(rds.port),
           "ARK_REDIS_PASSWORD": rds.password, "ARK_STATE_DIR": str(root / "state"),
           "ARK_LOG_DIR": str(root / "log"), "ARK_RUN_DIR": str(root / "run"),
           "ARK_BUS_BLOCK_MS": "100"}
    procs = []
    try:
        for name in ("hrm", "kenny", "joey"):
            procs.append(subprocess.Popen([sys.executable, "-m", "ark_runtime.cli", "agent",
                                           name], env=env, stderr=subprocess.DEVNULL))
        # Consumers first, so their groups exist; Kyle's first emit starts the clock.
        deadline = time.monotonic() + 30
        while any(not rds.client.exists(f"ark:stream:{n}") for n in ("joey", "kenny", "hrm")):
            if time.monotonic() > deadline:
                raise RuntimeError("agents did not start; see logs in " + str(root))
            time.sleep(0.05)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "ark_runtime.cli", "agent", "kyle"],
            env={**env, "ARK_FEED": "synthetic", "ARK_FEED_SYMBOLS": ",".join(symbols),
                 "ARK_FEED_SEED": "7", "ARK_FEED_BARS": str(bars), "ARK_FEED_RATE": str(rate)},
            stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 600
        while rds.client.xlen(DECISIONS_STREAM) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {rds.client.xlen(DECISIONS_STREAM)} of {expected} "
                                   "decisions after 600 s")
            time.sleep(0.05)
        # (correlation id = the bar's message id, decision time); one bar may yield 2 plans.
        decided = [(fields["correlation_id"], int(entry_id.split("-")[0]) / 1000)
                   for entry_id, fields in rds.client.xrange(DECISIONS_STREAM)]
        wanted = {c for c, _ in decided}
        emitted: dict[str, float] = {}
        first_emit = None
        with (root / "log" / "kyle.log").open() as fh:
            for text in fh:
                line = json.loads(text)
                if line.get("event") != "emitted":
                    continue
                t = _epoch(line["ts"])
                first_emit = t if first_emit is None else min(first_emit, t)
                if line["emitted_id"] in wanted:
                    emitted[line["emitted_id"]] = t
        latencies = [(t - emitted[c]) * 1000 for c, t in decided]
        elapsed = max(t for _, t in decided) - first_emit
        return {"plans": len(decided), "bars": bars * len(symbols), "elapsed": elapsed,
                "plans_s": len(decided) / elapsed, "bars_s": bars * len(symbols) / elapsed,
                "p50": pct(latencies, 0.50), "p99": pct(latencies, 0.99)}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(root, ignore_errors=True)


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts).timestamp()


def redis_benchmark(rds: Redis, clients: int, n: int) -> float:
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(rds.port), "-a", rds.password,
         "-n", str(n), "-c", str(clients), "-q", "XADD", "bench", "*", "f", "v"],
        capture_output=True, text=True, timeout=300, check=True)
    match = re.search(r"([\d.]+) requests per second", out.stdout.replace(",", ""))
    if not match:
        raise RuntimeError(f"unexpected redis-benchmark output: {out.stdout!r}")
    rds.client.delete("bench")
    return float(match.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bars", type=int, default=2000, help="bars per symbol")
    ap.add_argument("--symbols", type=int, default=5)
    ap.add_argument("--rate", type=float, default=100.0, help="bars/s for the paced run")
    ap.add_argument("--paced-bars", type=int, default=400, help="bars per symbol, paced run")
    args = ap.parse_args()
    symbols = SYMBOLS[: args.symbols]
    rds = Redis()
    try:
        results: dict[str, list[dict[str, float]]] = {"saturated": [], "paced": []}
        plans = expected_plans(symbols, args.bars)
        paced_plans = expected_plans(symbols, args.paced_bars)
        for i in range(args.runs):
            print(f"run {i + 1}/{args.runs}: saturated ({args.bars * len(symbols)} bars, "
                  f"{plans} plans) ...", file=sys.stderr, flush=True)
            results["saturated"].append(run_pipeline(rds, symbols, args.bars, plans, 0))
            print(f"run {i + 1}/{args.runs}: paced at {args.rate:g} bars/s ...",
                  file=sys.stderr, flush=True)
            results["paced"].append(run_pipeline(rds, symbols, args.paced_bars, paced_plans,
                                                 args.rate))
        ceiling = {c: statistics.median(redis_benchmark(rds, c, 200_000)
                                        for _ in range(args.runs)) for c in (1, 50)}
    finally:
        rds.close()
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items()}
    print(f"\nARK pipeline benchmark (median of {args.runs} runs; {os.cpu_count()} CPUs; "
          f"redis-server {_redis_version()})")
    print(f"{'mode':<11}{'bars':>7}{'plans':>7}{'secs':>8}{'bars/s':>9}{'plans/s':>9}"
          f"{'p50 ms':>9}{'p99 ms':>9}")
    for mode, m in med.items():
        print(f"{mode:<11}{m['bars']:>7.0f}{m['plans']:>7.0f}{m['elapsed']:>8.2f}"
              f"{m['bars_s']:>9.0f}{m['plans_s']:>9.1f}{m['p50']:>9.1f}{m['p99']:>9.1f}")
    print("\nceiling: redis-benchmark XADD bench * f v (200k requests)")
    for c, v in ceiling.items():
        print(f"  {c:>2} client{'s' if c > 1 else ' '}: {v:>10.0f} XADD/s")
    return 0


def _redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    match = re.search(r"v=(\S+)", out.stdout)
    return match.group(1) if match else "?"


if __name__ == "__main__":
    sys.exit(main())
