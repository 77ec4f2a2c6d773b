"""Pipeline benchmark: the four agents as real processes on a real redis-server, this tree side
by side with a baseline tree in the same run (runs interleaved, medians reported).

    .venv/bin/python benchmarks/pipeline_throughput.py [--baseline-rev f0771c7 | --baseline DIR]
        [--runs 3] [--bars 2500] [--symbols 8] [--hrm-plans 20000]
        [--rate 2000] [--min-samples 20000] [--paced-runs 1] [--modes saturated,hrm,paced]
        [--hrm-synchronous FULL|NORMAL]

Three separate measurements, each from an idle, ready pipeline:
* saturated: Kyle replays --bars x --symbols synthetic bars as fast as the bus takes them.
  bars/s and decisions/s = counts / (first emit -> last decision). CPU per input bar = the
  CPU time (user+system, from psutil, i.e. the kernel's own accounting) the four agent
  processes and redis-server spent between the first emit and the last decision, / bars.
* hrm: HRM alone; --hrm-plans trade.plan envelopes are XADDed (pipelined) to its inbox and
  timed to the last decision. decisions/s and CPU per decision (HRM + Redis).
* paced: Kyle at --rate bars/s until at least --min-samples decisions (each one sample of
  Kyle emit -> HRM decision: the emit time is Kyle's log timestamp, taken just before its
  EXEC; the decision time is the `ark:stream:decisions` entry id). The achieved rate
  (bars / first..last emit) is printed next to the requested one: a pipeline that cannot keep
  up shows it there and in its latency, which then includes queueing. Each hop's p99 is
  printed too (from the agents' batch log lines), so a slow p99 names the agent behind it.

Agents run in their production configuration: JSON logs to their files, stderr into a pipe
drained to a file (as journald would), fsync'd SQLite per HRM's policy. The baseline is the
code of --baseline-rev (exported with `git archive`) or an existing tree given by --baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import psutil
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ark_runtime.bus.envelope import Envelope  # noqa: E402
from ark_runtime.bus.streams import DECISIONS_STREAM, inbox  # noqa: E402
from ark_runtime.market import SyntheticAdapter  # noqa: E402
from ark_runtime.patterns import PatternDetector  # noqa: E402
from ark_runtime.planner import AccountConfig, PlanError, plan_trade  # noqa: E402
from ark_runtime.trace import expand_hops  # noqa: E402

SYMBOLS = ["AAPL", "MSFT", "NVDA", "BTC-USD", "ETH-USD", "BRK.B", "AMZN", "TSLA",
           "GOOG", "META", "NFLX", "AMD"]
CONSUMERS = ("hrm", "kenny", "joey")
# Extra environment for one tree's agents (--hrm-synchronous applies to this tree only).
TREE_ENV: dict[Path, dict[str, str]] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


class Redis:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ark-bench-redis-"))
        self.port, self.password = free_port(), secrets.token_hex(12)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--requirepass", self.password, "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL)
        self.ps = psutil.Process(self.proc.pid)
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


class Sink(threading.Thread):
    """Drains a process's stderr into a file, as journald drains a unit's stderr."""

    def __init__(self, stream, path: Path) -> None:
        super().__init__(daemon=True)
        self.stream, self.path = stream, path

    def run(self) -> None:
        with self.path.open("wb") as out:
            for chunk in iter(lambda: self.stream.read1(65536), b""):
                out.write(chunk)


class Pipeline:
    """One tree's agents against the shared redis-server, in a fresh state directory."""

    def __init__(self, tree: Path, rds: Redis, agents: tuple[str, ...]) -> None:
        rds.client.flushall()
        rds.client.script_flush()
        self.rds, self.tree = rds, tree
        self.root = Path(tempfile.mkdtemp(prefix="ark-bench-"))
        self.env = {**os.environ, "PYTHONPATH": str(tree), "ARK_REDIS_PORT": str(rds.port),
                    "ARK_REDIS_PASSWORD": rds.password,
                    "ARK_STATE_DIR": str(self.root / "state"),
                    "ARK_LOG_DIR": str(self.root / "log"), "ARK_RUN_DIR": str(self.root / "run"),
                    "ARK_BUS_BLOCK_MS": "100", **TREE_ENV.get(tree, {})}
        self.procs: dict[str, subprocess.Popen] = {}
        for name in agents:
            self.start(name)
        deadline = time.monotonic() + 30
        while any(not rds.client.exists(inbox(n)) for n in agents):
            if time.monotonic() > deadline:
                raise RuntimeError(f"agents did not start; see {self.root}")
            time.sleep(0.05)
        time.sleep(0.3)  # past their first (idle) reads

    def start(self, name: str, **extra: str) -> None:
        proc = subprocess.Popen([sys.executable, "-m", "ark_runtime.cli", "agent", name],
                                cwd=self.tree, env={**self.env, **extra},
                                stderr=subprocess.PIPE)
        Sink(proc.stderr, self.root / f"{name}.stderr").start()
        self.procs[name] = proc

    def cpu(self) -> float:
        return sum(self.cpu_each().values())

    def cpu_each(self) -> dict[str, float]:
        return {n: cpu_s(psutil.Process(p.pid)) for n, p in self.procs.items()}

    def drained(self, total_bars: int | None) -> bool:
        c = self.rds.client
        if total_bars is not None:
            cursor = next(iter(c.scan_iter("ark:kyle:cursor:*")), None)
            if cursor is None or int(c.get(cursor) or 0) < total_bars:
                return False
        for name in self.procs:
            if name == "kyle":
                continue
            for g in c.xinfo_groups(inbox(name)):
                if g["pending"] or g["lag"]:
                    return False
        return True

    def wait_drained(self, total_bars: int | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.drained(total_bars):
            if time.monotonic() > deadline:
                raise RuntimeError(f"pipeline not drained after {timeout:.0f} s ({self.root})")
            time.sleep(0.05)

    def decisions(self) -> list[tuple[str, float]]:
        return [(f["correlation_id"], int(eid.split("-")[0]) / 1000)
                for eid, f in self.rds.client.xrange(DECISIONS_STREAM)]

    def emits(self) -> dict[str, float]:
        return self.commit_times("kyle")

    def commit_times(self, agent: str) -> dict[str, float]:
        """correlation id -> when `agent` first committed an output of that flow (the time
        its batch line is stamped with, taken just before its commit)."""
        out: dict[str, float] = {}
        with (self.root / "log" / f"{agent}.log").open() as fh:
            for text in fh:
                for line in expand_hops(json.loads(text)):
                    if line.get("event") in ("emitted", "decided") and line.get("emitted_id"):
                        key = line["emitted_id"] if agent == "kyle" else line["correlation_id"]
                        out.setdefault(key, datetime.fromisoformat(line["ts"]).timestamp())
        return out

    def close(self) -> None:
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def stage_p99(pipe: Pipeline, emitted: dict[str, float],
              decided: list[tuple[str, float]]) -> dict[str, float]:
    """Where the paced latency goes: p99 of each hop (previous agent's commit -> this agent's
    commit; `stream` = HRM's commit -> the decision's stream entry)."""
    marks = {"kyle": emitted, **{a: pipe.commit_times(a) for a in ("joey", "kenny", "hrm")}}
    marks["stream"] = {}
    for corr, t in decided:
        marks["stream"].setdefault(corr, t)
    order = ["kyle", "joey", "kenny", "hrm", "stream"]
    out: dict[str, float] = {}
    for prev, cur in itertools.pairwise(order):
        gaps = [(marks[cur][c] - marks[prev][c]) * 1000 for c in marks[cur] if c in marks[prev]]
        out[f"{cur}_p99"] = pct(gaps, 0.99) if gaps else float("nan")
    return out


def kyle_env(symbols: list[str], bars: int, rate: float) -> dict[str, str]:
    return {"ARK_FEED": "synthetic", "ARK_FEED_SYMBOLS": ",".join(symbols),
            "ARK_FEED_SEED": "7", "ARK_FEED_BARS": str(bars), "ARK_FEED_RATE": str(rate)}


def first_emit(pipe: Pipeline) -> None:
    while not any(True for _ in pipe.rds.client.scan_iter("ark:kyle:cursor:*")):
        time.sleep(0.002)


def saturated(tree: Path, rds: Redis, symbols: list[str], bars: int) -> dict[str, float]:
    pipe = Pipeline(tree, rds, CONSUMERS)
    try:
        pipe.start("kyle", **kyle_env(symbols, bars, 0))
        first_emit(pipe)
        each0, rcpu0, t0 = pipe.cpu_each(), cpu_s(rds.ps), time.time()
        total = bars * len(symbols)
        pipe.wait_drained(total, 900)
        each1, rcpu1 = pipe.cpu_each(), cpu_s(rds.ps)
        decided = pipe.decisions()
        elapsed = max(t for _, t in decided) - t0
        per = {f"{n}_us": (each1[n] - each0[n]) / total * 1e6 for n in each0}
        return {"bars": total, "decisions": len(decided), "secs": elapsed,
                "bars_s": total / elapsed, "dec_s": len(decided) / elapsed,
                "cpu_us_bar": (sum(each1.values()) - sum(each0.values()) + rcpu1 - rcpu0)
                / total * 1e6, **per, "redis_us": (rcpu1 - rcpu0) / total * 1e6}
    finally:
        pipe.close()


def plan_envelopes(n: int) -> list[dict[str, str]]:
    detector, account, plans = PatternDetector(), AccountConfig(account_size=100000), []
    for bar in SyntheticAdapter(SYMBOLS[:8], seed=7, bars=2000):
        for pattern in detector.update(bar):
            with contextlib.suppress(PlanError):  # an unplannable pattern: no plan
                plans.append(plan_trade(pattern, account))
    return [Envelope.new("trade.plan", plans[i % len(plans)], from_agent="kenny",
                         to_agent="hrm", message_id=str(uuid.uuid4())).to_fields()
            for i in range(n)]


def hrm_alone(tree: Path, rds: Redis, fields: list[dict[str, str]]) -> dict[str, float]:
    pipe = Pipeline(tree, rds, ("hrm",))
    try:
        cpu0, rcpu0, t0 = pipe.cpu(), cpu_s(rds.ps), time.time()
        for start in range(0, len(fields), 1000):
            with rds.client.pipeline(transaction=False) as p:
                for f in fields[start:start + 1000]:
                    p.xadd(inbox("hrm"), f)
                p.execute()
        pipe.wait_drained(None, 900)
        cpu1, rcpu1 = pipe.cpu(), cpu_s(rds.ps)
        decided = pipe.decisions()
        elapsed = max(t for _, t in decided) - t0
        return {"decisions": len(decided), "secs": elapsed, "dec_s": len(decided) / elapsed,
                "cpu_us_dec": (cpu1 - cpu0 + rcpu1 - rcpu0) / len(decided) * 1e6}
    finally:
        pipe.close()


def paced(tree: Path, rds: Redis, symbols: list[str], rate: float,
          samples: int) -> dict[str, float]:
    # ~10.4 % of bars become decisions; ask for enough bars, with a margin.
    bars = int(samples / 0.095 / len(symbols)) + 1
    pipe = Pipeline(tree, rds, CONSUMERS)
    try:
        pipe.start("kyle", **kyle_env(symbols, bars, rate))
        first_emit(pipe)
        total = bars * len(symbols)
        pipe.wait_drained(total, total / rate * 4 + 120)
        decided, emitted = pipe.decisions(), pipe.emits()
        latencies = [(t - emitted[c]) * 1000 for c, t in decided if c in emitted]
        span = max(emitted.values()) - min(emitted.values())
        return {"requested": rate, "achieved": len(emitted) / span if span else 0.0,
                "samples": len(latencies), "p50": pct(latencies, 0.5),
                "p99": pct(latencies, 0.99), "max": max(latencies),
                **stage_p99(pipe, emitted, decided)}
    finally:
        pipe.close()


def baseline_tree(args: argparse.Namespace, keep: list[Path]) -> Path:
    if args.baseline:
        return Path(args.baseline).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="ark-bench-base-"))
    keep.append(tmp)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline_rev],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    return tmp


def median_of(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def report(title: str, cols: list[str], results: dict[str, list[dict[str, float]]]) -> None:
    print(f"\n{title}")
    print(f"{'tree':<10}" + "".join(f"{c:>14}" for c in cols) + "   (runs)")
    for tree, rows in results.items():
        if rows:
            m = median_of(rows)
            print(f"{tree:<10}" + "".join(f"{m[c]:>14.1f}" for c in cols) + f"   ({len(rows)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-rev", default="f0771c7", help="git revision of the baseline")
    ap.add_argument("--baseline", help="an existing tree to run the baseline agents from")
    ap.add_argument("--runs", type=int, default=3, help="saturated and hrm runs per tree")
    ap.add_argument("--paced-runs", type=int, default=1)
    ap.add_argument("--bars", type=int, default=2500, help="bars per symbol, saturated")
    ap.add_argument("--symbols", type=int, default=8)
    ap.add_argument("--hrm-plans", type=int, default=20000)
    ap.add_argument("--rate", type=float, default=2000.0, help="bars/s, paced")
    ap.add_argument("--min-samples", type=int, default=20000, help="decisions, paced")
    ap.add_argument("--modes", default="saturated,hrm,paced")
    ap.add_argument("--trees", default="baseline,new", help="which trees to run")
    ap.add_argument("--hrm-synchronous", choices=("FULL", "NORMAL"),
                    help="this tree's HRM fsync policy (ARK_HRM_SYNCHRONOUS; default FULL)")
    args = ap.parse_args()
    if args.hrm_synchronous:
        TREE_ENV[REPO] = {"ARK_HRM_SYNCHRONOUS": args.hrm_synchronous}
    symbols, modes = SYMBOLS[: args.symbols], set(args.modes.split(","))
    cleanup: list[Path] = []
    trees = {"baseline": baseline_tree(args, cleanup), "new": REPO}
    trees = {k: v for k, v in trees.items() if k in args.trees.split(",")}
    res: dict[str, dict[str, list[dict[str, float]]]] = {
        m: {t: [] for t in trees} for m in ("saturated", "hrm", "paced")}
    fields = plan_envelopes(args.hrm_plans) if "hrm" in modes else []
    rds = Redis()
    try:
        for i in range(args.runs):
            for name, tree in trees.items():  # interleaved: both trees see the same machine
                if "saturated" in modes:
                    log(f"run {i + 1}: {name} saturated")
                    res["saturated"][name].append(saturated(tree, rds, symbols, args.bars))
                if "hrm" in modes:
                    log(f"run {i + 1}: {name} hrm alone")
                    res["hrm"][name].append(hrm_alone(tree, rds, fields))
        for i in range(args.paced_runs if "paced" in modes else 0):
            for name, tree in trees.items():
                log(f"run {i + 1}: {name} paced at {args.rate:g} bars/s")
                res["paced"][name].append(paced(tree, rds, symbols, args.rate,
                                                args.min_samples))
    finally:
        rds.close()
        for p in cleanup:
            shutil.rmtree(p, ignore_errors=True)
    base = args.baseline or args.baseline_rev
    print(f"ARK pipeline benchmark: baseline {base} vs this tree (HRM synchronous="
          f"{args.hrm_synchronous or 'FULL'}); medians; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    report(f"saturated ({args.bars * len(symbols)} bars, {len(symbols)} symbols)",
           ["bars_s", "dec_s", "cpu_us_bar", "decisions"], res["saturated"])
    report("saturated: CPU us per input bar by process", ["kyle_us", "joey_us", "kenny_us",
                                                          "hrm_us", "redis_us"],
           res["saturated"])
    report(f"HRM alone ({args.hrm_plans} plans)", ["dec_s", "cpu_us_dec", "decisions"],
           res["hrm"])
    report(f"paced (requested {args.rate:g} bars/s, >= {args.min_samples} samples)",
           ["achieved", "samples", "p50", "p99", "max"], res["paced"])
    report("paced: p99 ms of each hop (previous agent's commit -> this one's; stream = "
           "HRM's commit -> the decision entry)",
           ["joey_p99", "kenny_p99", "hrm_p99", "stream_p99"], res["paced"])
    return 0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
