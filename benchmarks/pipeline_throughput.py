"""Pipeline benchmark: the four agents as real processes on a real redis-server, this tree side
by side with a baseline tree in the same run (runs interleaved, medians reported).

    .venv/bin/python benchmarks/pipeline_throughput.py [--baseline-rev HEAD | --baseline DIR]
        [--runs 3] [--bars 2500] [--symbols 8] [--hrm-plans 20000]
        [--rate 2000] [--min-samples 20000] [--paced-runs 3] [--modes saturated,hrm,paced]
        [--hrm-synchronous FULL|NORMAL] [--appendfsync always|everysec|no|no-aof]
        [--save "RDB schedule"] [--single-password] [--no-executor]

With the deployed defaults (issue #23 §3) unless a flag says otherwise: HRM synchronous FULL,
Redis as roles/ark_redis writes it (AOF with the role's appendfsync, its RDB schedule, a user
per component from a 0600 aclfile with `default` off, each agent logging in as its own user;
no password on any command line), and the executor as the fifth agent. No TLS: one host
(the role turns TLS on only when another host uses this Redis). The old benchmark's setup is
`--appendfsync no-aof --save "" --single-password --no-executor`.

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
  printed too (from the agents' batch log lines), so a slow p99 names the agent behind it;
  the executor's hop is HRM's approval -> its fill, which waits for that symbol's next bar.
  Every run's figures are printed too, not only the medians.

Agents run in their production configuration: JSON logs to their files, stderr into a pipe
drained to a file (as journald would), fsync'd SQLite per HRM's policy. The baseline is the
code of --baseline-rev (exported with `git archive`) or an existing tree given by --baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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

from ark_runtime.bus.acl import render_acl_file, user_names  # noqa: E402
from ark_runtime.bus.envelope import Envelope  # noqa: E402
from ark_runtime.bus.streams import DECISIONS_STREAM, inbox  # noqa: E402
from ark_runtime.market import SyntheticAdapter  # noqa: E402
from ark_runtime.patterns import PatternDetector  # noqa: E402
from ark_runtime.planner import AccountConfig, PlanError, plan_trade  # noqa: E402
from ark_runtime.trace import expand_hops  # noqa: E402

SYMBOLS = ["AAPL", "MSFT", "NVDA", "BTC-USD", "ETH-USD", "BRK.B", "AMZN", "TSLA",
           "GOOG", "META", "NFLX", "AMD"]
# Every consumer of the deployed pipeline, the executor included (it reads Kyle's bars and
# HRM's approvals, and sends HRM its fills and marks); --no-executor leaves it out.
CONSUMERS = ("executor", "hrm", "kenny", "joey")
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


def role_default(name: str) -> str:
    """One of roles/ark_redis's defaults, as the role deploys it (a scalar line)."""
    for line in (REPO / "roles/ark_redis/defaults/main.yml").read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep and key == name:
            return value.strip().strip('"')
    raise KeyError(name)


def redis_config(port: int, data_dir: Path, aclfile: Path, appendfsync: str,
                 save: str) -> str:
    """redis-server's config as the role writes it (ark.conf.j2) for one local host: the
    per-component users' aclfile (`default` off), AOF with the role's fsync policy, the RDB
    schedule. `appendfsync no-aof` is the old benchmark's Redis (no AOF)."""
    aof = ("appendonly no" if appendfsync == "no-aof"
           else f"appendonly yes\nappendfsync {appendfsync}\naof-use-rdb-preamble yes")
    return (f"port {port}\nbind 127.0.0.1\nprotected-mode yes\ndir {data_dir}\n"
            f"aclfile {aclfile}\nmaxmemory 0\nsave \"{save}\"\n{aof}\n")


def private_file(path: Path, text: str) -> Path:
    """`text` in a new file only its owner can read (0600 from its creation)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


class Redis:
    """A redis-server as the role deploys it: per-component ACL users (passwords hashed in a
    0600 aclfile; never on a command line), AOF with the role's appendfsync, its RDB schedule.
    The agents log in as their own users (ARK_REDIS_USERNAME/PASSWORD in their environment);
    the benchmark itself as `admin`. `single_password=True` is the old setup: `default` with
    one password for everyone (still from the aclfile, not argv)."""

    def __init__(self, appendfsync: str, save: str, single_password: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ark-bench-redis-"))
        self.port = free_port()
        self.passwords = {n: secrets.token_hex(16) for n in user_names()}
        self.single_password = single_password
        hashes = {n: hashlib.sha256(pw.encode()).hexdigest() for n, pw in self.passwords.items()}
        acl = render_acl_file(hashes, legacy_default_hash=hashes["admin"]
                              if single_password else None)
        aclfile = private_file(self.dir / "users.acl", acl)
        conf = private_file(self.dir / "redis.conf",
                            redis_config(self.port, self.dir, aclfile, appendfsync, save))
        self.proc = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL)
        self.ps = psutil.Process(self.proc.pid)
        self.client = redis.Redis(port=self.port, username="admin",
                                  password=self.passwords["admin"], decode_responses=True)
        for _ in range(200):
            try:
                self.client.ping()
                return
            except (redis.ConnectionError, redis.AuthenticationError):
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def login(self, agent: str) -> dict[str, str]:
        """The environment an agent logs in with (its own user, or the shared password)."""
        if self.single_password:
            return {"ARK_REDIS_PASSWORD": self.passwords["admin"]}
        return {"ARK_REDIS_USERNAME": agent, "ARK_REDIS_PASSWORD": self.passwords[agent]}

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
                                cwd=self.tree, env={**self.env, **self.rds.login(name), **extra},
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

    def commit_times(self, agent: str, types: tuple[str, ...] = ()) -> dict[str, float]:
        """correlation id -> when `agent` first committed an output of that flow (the time
        its batch line is stamped with, taken just before its commit); only outputs of
        `types` if given."""
        out: dict[str, float] = {}
        with (self.root / "log" / f"{agent}.log").open() as fh:
            for text in fh:
                for line in expand_hops(json.loads(text)):
                    if line.get("event") in ("emitted", "decided") and line.get("emitted_id") \
                            and (not types or line.get("type") in types):
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
    hops = list(itertools.pairwise(["kyle", "joey", "kenny", "hrm", "stream"]))
    if "executor" in pipe.procs:
        # HRM's commit of an approval -> the executor's commit of its fill (at the next bar
        # of that symbol: the fill is at the next bar's open, so this hop includes that wait).
        marks["executor"] = pipe.commit_times("executor", ("position.filled",))
        hops.append(("hrm", "executor"))
    out: dict[str, float] = {"executor_p99": float("nan")}
    for prev, cur in hops:
        gaps = [(marks[cur][c] - marks[prev][c]) * 1000 for c in marks[cur] if c in marks[prev]]
        out[f"{cur}_p99"] = pct(gaps, 0.99) if gaps else float("nan")
    return out


def kyle_env(symbols: list[str], bars: int, rate: float) -> dict[str, str]:
    return {"ARK_FEED": "synthetic", "ARK_FEED_SYMBOLS": ",".join(symbols),
            "ARK_FEED_SEED": "7", "ARK_FEED_BARS": str(bars), "ARK_FEED_RATE": str(rate)}


def first_emit(pipe: Pipeline) -> None:
    while not any(True for _ in pipe.rds.client.scan_iter("ark:kyle:cursor:*")):
        time.sleep(0.002)


def saturated(tree: Path, rds: Redis, symbols: list[str], bars: int,
              consumers: tuple[str, ...] = CONSUMERS) -> dict[str, float]:
    pipe = Pipeline(tree, rds, consumers)
    try:
        pipe.start("kyle", **kyle_env(symbols, bars, 0))
        first_emit(pipe)
        each0, rcpu0, t0 = pipe.cpu_each(), cpu_s(rds.ps), time.time()
        total = bars * len(symbols)
        pipe.wait_drained(total, 900)
        each1, rcpu1 = pipe.cpu_each(), cpu_s(rds.ps)
        decided = pipe.decisions()
        elapsed = max(t for _, t in decided) - t0
        per = {"executor_us": float("nan"),
               **{f"{n}_us": (each1[n] - each0[n]) / total * 1e6 for n in each0}}
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
          samples: int, consumers: tuple[str, ...] = CONSUMERS) -> dict[str, float]:
    # ~10.4 % of bars become decisions; ask for enough bars, with a margin.
    bars = int(samples / 0.095 / len(symbols)) + 1
    pipe = Pipeline(tree, rds, consumers)
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


def each_run(title: str, cols: list[str], results: dict[str, list[dict[str, float]]]) -> None:
    """Every run's figures (a goal is met only if each run meets it, not just the median)."""
    print(f"\n{title}")
    for tree, rows in results.items():
        for i, r in enumerate(rows, 1):
            print(f"{tree:<10}{i:>3}  " + "  ".join(f"{c}={r[c]:.1f}" for c in cols))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-rev", default="HEAD", help="git revision of the baseline")
    ap.add_argument("--baseline", help="an existing tree to run the baseline agents from")
    ap.add_argument("--runs", type=int, default=3, help="saturated and hrm runs per tree")
    ap.add_argument("--paced-runs", type=int, default=3)
    ap.add_argument("--bars", type=int, default=2500, help="bars per symbol, saturated")
    ap.add_argument("--symbols", type=int, default=8)
    ap.add_argument("--hrm-plans", type=int, default=20000)
    ap.add_argument("--rate", type=float, default=2000.0, help="bars/s, paced")
    ap.add_argument("--min-samples", type=int, default=20000, help="decisions, paced")
    ap.add_argument("--modes", default="saturated,hrm,paced")
    ap.add_argument("--trees", default="baseline,new", help="which trees to run")
    ap.add_argument("--hrm-synchronous", choices=("FULL", "NORMAL"),
                    help="this tree's HRM fsync policy (ARK_HRM_SYNCHRONOUS; default FULL)")
    # The deployed defaults (roles/ark_redis); the flags choose the old benchmark's setup.
    ap.add_argument("--appendfsync", choices=("always", "everysec", "no", "no-aof"),
                    default=role_default("ark_redis_appendfsync"),
                    help="Redis AOF fsync policy (default: the role's); no-aof: AOF off")
    ap.add_argument("--save", default=role_default("ark_redis_save"),
                    help='Redis RDB schedule (default: the role\'s; "" for none)')
    ap.add_argument("--single-password", action="store_true",
                    help="every agent logs in as `default` with one password (no ACL users)")
    ap.add_argument("--no-executor", action="store_true",
                    help="leave the executor out (the four-agent pipeline of earlier runs)")
    args = ap.parse_args()
    consumers = tuple(c for c in CONSUMERS if c != "executor" or not args.no_executor)
    if args.hrm_synchronous:
        TREE_ENV[REPO] = {"ARK_HRM_SYNCHRONOUS": args.hrm_synchronous}
    symbols, modes = SYMBOLS[: args.symbols], set(args.modes.split(","))
    cleanup: list[Path] = []
    trees = {"baseline": baseline_tree(args, cleanup), "new": REPO}
    trees = {k: v for k, v in trees.items() if k in args.trees.split(",")}
    res: dict[str, dict[str, list[dict[str, float]]]] = {
        m: {t: [] for t in trees} for m in ("saturated", "hrm", "paced")}
    fields = plan_envelopes(args.hrm_plans) if "hrm" in modes else []
    rds = Redis(args.appendfsync, args.save, args.single_password)
    try:
        for i in range(args.runs):
            for name, tree in trees.items():  # interleaved: both trees see the same machine
                if "saturated" in modes:
                    log(f"run {i + 1}: {name} saturated")
                    res["saturated"][name].append(saturated(tree, rds, symbols, args.bars,
                                                             consumers))
                if "hrm" in modes:
                    log(f"run {i + 1}: {name} hrm alone")
                    res["hrm"][name].append(hrm_alone(tree, rds, fields))
        for i in range(args.paced_runs if "paced" in modes else 0):
            for name, tree in trees.items():
                log(f"run {i + 1}: {name} paced at {args.rate:g} bars/s")
                res["paced"][name].append(paced(tree, rds, symbols, args.rate,
                                                args.min_samples, consumers))
    finally:
        rds.close()
        for p in cleanup:
            shutil.rmtree(p, ignore_errors=True)
    base = args.baseline or args.baseline_rev
    print(f"ARK pipeline benchmark: baseline {base} vs this tree (HRM synchronous="
          f"{args.hrm_synchronous or 'FULL'}; Redis appendfsync {args.appendfsync}, save "
          f"'{args.save}', {'one password' if args.single_password else 'ACL users'}; "
          f"{'no executor' if args.no_executor else 'executor'}); medians; "
          f"{os.cpu_count()} CPUs, load {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    report(f"saturated ({args.bars * len(symbols)} bars, {len(symbols)} symbols)",
           ["bars_s", "dec_s", "cpu_us_bar", "decisions"], res["saturated"])
    report("saturated: CPU us per input bar by process", ["kyle_us", "joey_us", "kenny_us",
                                                          "hrm_us", "executor_us", "redis_us"],
           res["saturated"])
    report(f"HRM alone ({args.hrm_plans} plans)", ["dec_s", "cpu_us_dec", "decisions"],
           res["hrm"])
    report(f"paced (requested {args.rate:g} bars/s, >= {args.min_samples} samples)",
           ["achieved", "samples", "p50", "p99", "max"], res["paced"])
    report("paced: p99 ms of each hop (previous agent's commit -> this one's; stream = "
           "HRM's commit -> the decision entry; executor = HRM's approval -> its fill)",
           ["joey_p99", "kenny_p99", "hrm_p99", "stream_p99", "executor_p99"], res["paced"])
    each_run("paced, each run: emit->decision p99 ms and each hop's", ["p99", "joey_p99",
             "kenny_p99", "hrm_p99", "stream_p99", "executor_p99"], res["paced"])
    each_run("saturated, each run", ["bars_s", "cpu_us_bar"], res["saturated"])
    each_run("HRM alone, each run", ["dec_s"], res["hrm"])
    return 0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
