"""Soak: Redis memory over a long steady run of the whole pipeline (issue #19).

    .venv/bin/python benchmarks/bus_soak.py [--bars 5000000] [--rate 1000] [--symbols 32]
        [--modes bounded,baseline] [--sample-s 5] [--warmup-s 240] [--maxmemory 256mb]
        [--side-maxlen N] [--json PATH]

Every agent of the pipeline declaration runs as a real process (`python -m ark_runtime.cli
agent NAME`, as the units run them) on a real redis-server configured like the ark_redis
role (maxmemory, noeviction).
Kyle replays --bars synthetic bars (--bars / --symbols per symbol) at --rate bars/s. Every
--sample-s the script samples INFO `used_memory`, Kyle's cursor and the decisions count.
After --warmup-s (default: two mark lifetimes) it fits a least-squares line to used_memory
over time and reports the growth in MB per hour.

Modes, run one after the other in the same invocation on fresh servers:
* bounded: this tree as deployed (marks live ARK_BUS_DEDUP_TTL_S, 120 s by default);
* baseline: this tree with ARK_BUS_DEDUP_TTL_S=604800, i.e. the old scheme's 7-day marks
  (the old commit script set the same mark with that lifetime, so Redis holds the same keys).

A mode ends when Kyle has emitted every bar and the inboxes drained, or when Redis refused
writes (OOM) and Kyle fed under 1 % of --rate over the last 60 s: the baseline fills
maxmemory that way on a long enough run, which is the failure this scheme removes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from redis_proc import RedisProc  # noqa: E402

from ark_runtime import pipeline  # noqa: E402
from ark_runtime.bus.streams import DECISIONS_STREAM, inbox  # noqa: E402

# Every consumer of the pipeline declaration (the executor too: it reads every bar, so an
# executor left out kept an untrimmed inbox that filled maxmemory at 1,500 bars/s).
CONSUMERS = pipeline.CONSUMERS
BASELINE_TTL_S = 7 * 24 * 3600
STALL_S = 60.0


@dataclass
class Sample:
    t: float
    used: int
    bars: int
    decisions: int
    marks: int
    backlog: int  # entries in the consumers' inboxes (Joey behind Kyle shows here)


@dataclass
class Run:
    mode: str
    samples: list[Sample] = field(default_factory=list)
    oom: int = 0
    ended: str = ""

    def steady(self, warmup_s: float, total: int) -> list[Sample]:
        """After warm-up, while Kyle was still feeding (the drain at the end is not steady)."""
        return [s for s in self.samples if s.t >= warmup_s and s.bars < total]

    def growth_mb_per_h(self, warmup_s: float, total: int) -> float | None:
        pts = [(s.t, s.used) for s in self.steady(warmup_s, total)]
        if len(pts) < 3:
            return None
        slope = statistics.linear_regression([t for t, _ in pts], [u for _, u in pts]).slope
        return slope * 3600 / 1e6

    def rate(self) -> float:
        first = next((s for s in self.samples if s.bars > 0), None)
        last = self.samples[-1] if self.samples else None
        if first is None or last is None or last.t <= first.t:
            return 0.0
        return (last.bars - first.bars) / (last.t - first.t)


def _oom_count(r) -> int:
    stats = r.info("errorstats")
    return int(stats.get("errorstat_OOM", {}).get("count", 0))


def _drained(r) -> bool:
    for name in CONSUMERS:
        for g in r.xinfo_groups(inbox(name)):
            if g["pending"] or g.get("lag"):
                return False
    return True


def _cursor(r) -> int:
    key = next(r.scan_iter("ark:kyle:cursor:*"), None)
    return int(r.get(key) or 0) if key else 0


def run_mode(mode: str, args: argparse.Namespace) -> Run:
    run = Run(mode)
    ttl = BASELINE_TTL_S if mode == "baseline" else None
    with RedisProc("--maxmemory", args.maxmemory, "--maxmemory-policy", "noeviction") as server, \
            tempfile.TemporaryDirectory(prefix=f"ark-soak-{mode}-") as root:
        r = server.client()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ARK_", "NOTIFY_"))}
        env.update({"PYTHONPATH": str(REPO), "ARK_REDIS_PORT": str(server.port),
                    "ARK_REDIS_PASSWORD": server.password, "ARK_STATE_DIR": f"{root}/state",
                    "ARK_LOG_DIR": f"{root}/log", "ARK_RUN_DIR": f"{root}/run",
                    "ARK_FEED_DIR": f"{root}/feeds"})
        if ttl:
            env["ARK_BUS_DEDUP_TTL_S"] = str(ttl)
        if args.side_maxlen:
            env["ARK_BUS_SIDE_MAXLEN"] = str(args.side_maxlen)
        procs = []
        try:
            for name in CONSUMERS:
                procs.append(_start(name, env, root))
            _wait(lambda: all(r.exists(inbox(n)) for n in CONSUMERS), 60, "agents to start")
            symbols = [f"S{k:03d}" for k in range(args.symbols)]
            procs.append(_start("kyle", {**env, "ARK_FEED": "synthetic",
                                         "ARK_FEED_SYMBOLS": ",".join(symbols),
                                         "ARK_FEED_BARS": str(args.bars // args.symbols),
                                         "ARK_FEED_RATE": str(args.rate)}, root))
            total = args.bars // args.symbols * args.symbols
            t0 = time.monotonic()
            # A full Redis still lets a trickle through (every trim frees a little room):
            # "no progress" is under 1 % of the asked rate over the last minute.
            window: list[tuple[float, int]] = []
            while True:
                now = time.monotonic()
                s = Sample(now - t0, int(r.info("memory")["used_memory"]), _cursor(r),
                           r.xlen(DECISIONS_STREAM), int(r.dbsize()),
                           sum(r.xlen(inbox(n)) for n in CONSUMERS))
                run.samples.append(s)
                run.oom = _oom_count(r)
                # Keep the newest sample at least STALL_S old as the reference point.
                window.append((now, s.bars))
                while len(window) > 1 and now - window[1][0] >= STALL_S:
                    window.pop(0)
                then, bars_then = window[0]
                stalled = (now - then >= STALL_S
                           and s.bars - bars_then < 0.01 * args.rate * (now - then))
                print(f"{mode:8} t={s.t:7.0f}s bars={s.bars:>9}/{total} "
                      f"used={s.used / 1e6:7.1f} MB keys={s.marks:>8} "
                      f"decisions={s.decisions:>7} inboxes={s.backlog:>7} oom={run.oom}",
                      flush=True)
                if s.bars >= total and _drained(r):
                    run.ended = "fed and drained"
                    break
                if run.oom and stalled:
                    run.ended = "Redis refused writes (OOM); the pipeline stopped"
                    break
                for p in procs:
                    if p.poll() is not None:
                        run.ended = f"an agent exited {p.returncode}; logs in {root}"
                        raise SystemExit(run.ended)
                time.sleep(args.sample_s)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
    return run


def _start(name: str, env: dict[str, str], root: str) -> subprocess.Popen:
    err = Path(root) / f"{name}.stderr"
    err.parent.mkdir(parents=True, exist_ok=True)
    with err.open("wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "ark_runtime.cli", "agent", name],
                                env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=fh)


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=5_000_000)
    ap.add_argument("--rate", type=float, default=1000.0, help="bars/s Kyle emits")
    ap.add_argument("--symbols", type=int, default=32)
    ap.add_argument("--modes", default="bounded,baseline")
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--warmup-s", type=float, default=240.0,
                    help="ignored for the growth fit (two mark lifetimes by default)")
    ap.add_argument("--maxmemory", default="256mb")
    ap.add_argument("--side-maxlen", type=int, default=0,
                    help="ARK_BUS_SIDE_MAXLEN for both modes (0: the deployed default, "
                    "100,000: the decisions stream then grows for 100,000 decisions, about "
                    "1,000 s at 1,000 bars/s, before it plateaus at ~115 MB)")
    ap.add_argument("--json", type=Path, help="also write the samples here")
    args = ap.parse_args(argv)
    # SIGTERM stops the run like Ctrl-C: the agents and redis-server are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    runs = [run_mode(m.strip(), args) for m in args.modes.split(",") if m.strip()]
    print(f"\nbars {args.bars}, rate {args.rate:g}/s requested, {args.symbols} symbols, "
          f"maxmemory {args.maxmemory}, side streams capped at "
          f"{args.side_maxlen or 'the default'}, warm-up {args.warmup_s:g} s")
    total = args.bars // args.symbols * args.symbols
    print("| mode | bars fed | achieved bars/s | duration | used_memory while feeding after "
          "warm-up (min..max) | inbox entries then (max) | growth after warm-up | "
          "OOM refusals | ended |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        steady = run.steady(args.warmup_s, total) or run.samples[-1:]
        growth = run.growth_mb_per_h(args.warmup_s, total)
        used = [s.used for s in steady]
        print(f"| {run.mode} | {run.samples[-1].bars} | {run.rate():.0f} | "
              f"{run.samples[-1].t:.0f} s | {min(used) / 1e6:.1f}..{max(used) / 1e6:.1f} MB "
              f"| {max(s.backlog for s in steady)} "
              f"| {'n/a' if growth is None else f'{growth:+.1f} MB/h'} | {run.oom} | "
              f"{run.ended} |")
    if args.json:
        args.json.write_text(json.dumps({r.mode: [s.__dict__ for s in r.samples]
                                         for r in runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
