"""Scale-out benchmark (issue #12): Joey with 1 shard vs N shards, side by side in one run.

    .venv/bin/python benchmarks/scale_out.py [--shards 2] [--runs 3] [--symbols 32]
        [--bars 1500] [--modes joey,pipeline]

Real agent processes of this tree on one real redis-server (production configuration: JSON
log files, stderr drained to a file as journald would). Runs alternate 1 shard / N shards so
both see the same machine; medians are reported with the ratio N/1.

* joey: the sharded stage alone. --bars x --symbols bars (envelopes as Kyle writes them) are
  XADDed, pipelined and routed by crc32(symbol) exactly as Kyle routes them, into the shards'
  inboxes of idle, ready Joey processes; timed from the first XADD to every shard's group
  having acked everything. bars/s, and CPU per bar (user+system from psutil) of the Joeys
  and of Redis.
* pipeline: Kyle -> Joey shards -> Kenny -> HRM saturated (Kyle unpaced), from Kyle's first
  emit to the last decision: bars/s and decisions/s.

The ratio is bounded by the machine: every process shares its cores, so a second Joey only
gains what the first one leaves idle (see docs/AGENT_PROTOCOL.md, "Scaling out").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from pipeline_throughput import Pipeline, Redis, cpu_s, first_emit, kyle_env  # noqa: E402

from ark_runtime.bus.envelope import Envelope, derive_id  # noqa: E402
from ark_runtime.bus.shards import shard_names, shard_of  # noqa: E402
from ark_runtime.bus.streams import inbox  # noqa: E402
from ark_runtime.market import SyntheticAdapter  # noqa: E402

REPO = BENCH.parent


def symbols(n: int) -> list[str]:
    return [f"SYM{i:03d}" for i in range(n)]


def start(rds: Redis, shards: int, agents: tuple[str, ...]) -> Pipeline:
    pipe = Pipeline(REPO, rds, ())
    pipe.env["ARK_JOEY_SHARDS"] = str(shards)
    for name in agents:
        pipe.start(name)
    deadline = time.monotonic() + 30
    while any(not rds.client.exists(inbox(n)) for n in agents if n != "kyle"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"agents did not start; see {pipe.root}")
        time.sleep(0.05)
    time.sleep(0.3)  # past their first (idle) reads
    return pipe


def bar_fields(syms: list[str], bars: int) -> list[tuple[str, dict[str, str]]]:
    """(symbol, fields) of every bar, in feed order, built once for all runs."""
    return [(bar.symbol, Envelope.new("market.bar", bar, from_agent="kyle", to_agent="joey",
                                      message_id=derive_id("bench", str(i))).to_fields())
            for i, bar in enumerate(SyntheticAdapter(syms, seed=7, bars=bars))]


def joey_stage(rds: Redis, shards: int, fields: list[tuple[str, dict[str, str]]]
               ) -> dict[str, float]:
    names = shard_names(shards)
    pipe = start(rds, shards, tuple(names))
    try:
        procs = [psutil.Process(p.pid) for p in pipe.procs.values()]
        cpu0, rcpu0, t0 = sum(map(cpu_s, procs)), cpu_s(rds.ps), time.monotonic()
        batch = rds.client.pipeline(transaction=False)
        for i, (symbol, f) in enumerate(fields, 1):
            batch.xadd(inbox(names[shard_of(symbol, shards)]), f)
            if i % 2000 == 0:
                batch.execute()
        batch.execute()
        pipe.wait_drained(None, 900)
        secs = time.monotonic() - t0
        cpu1, rcpu1 = sum(map(cpu_s, procs)), cpu_s(rds.ps)
        return {"bars_s": len(fields) / secs, "secs": secs,
                "joey_us": (cpu1 - cpu0) / len(fields) * 1e6,
                "redis_us": (rcpu1 - rcpu0) / len(fields) * 1e6,
                "patterns": rds.client.xlen(inbox("kenny"))}
    finally:
        pipe.close()


def whole_pipeline(rds: Redis, shards: int, syms: list[str], bars: int) -> dict[str, float]:
    pipe = start(rds, shards, ("hrm", "kenny", *shard_names(shards)))
    try:
        pipe.start("kyle", **kyle_env(syms, bars, 0))
        first_emit(pipe)
        t0, total = time.time(), bars * len(syms)
        pipe.wait_drained(total, 900)
        decided = pipe.decisions()
        secs = max(t for _, t in decided) - t0
        return {"bars_s": total / secs, "dec_s": len(decided) / secs, "secs": secs,
                "decisions": len(decided)}
    finally:
        pipe.close()


def report(title: str, cols: list[str], rows: dict[int, list[dict[str, float]]]) -> None:
    print(f"\n{title}")
    print(f"{'shards':<8}" + "".join(f"{c:>12}" for c in cols) + "   runs (bars/s each)")
    med = {}
    for n, runs in rows.items():
        med[n] = {c: statistics.median(r[c] for r in runs) for c in cols}
        each = ", ".join(f"{r['bars_s']:.0f}" for r in runs)
        print(f"{n:<8}" + "".join(f"{med[n][c]:>12.1f}" for c in cols) + f"   {each}")
    one, many = min(med), max(med)
    # Each round's two runs are back to back; on a shared machine the load moves between
    # rounds, so the median of the per-round ratios is the steadier figure.
    paired = [b["bars_s"] / a["bars_s"] for a, b in zip(rows[one], rows[many], strict=True)]
    print(f"ratio {many}/{one} shards: medians {med[many]['bars_s'] / med[one]['bars_s']:.2f}x, "
          f"per round {', '.join(f'{x:.2f}' for x in paired)} "
          f"(median {statistics.median(paired):.2f}x)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=2, help="the scaled-out shard count")
    ap.add_argument("--runs", type=int, default=3, help="runs per shard count and mode")
    ap.add_argument("--symbols", type=int, default=32)
    ap.add_argument("--bars", type=int, default=1500, help="bars per symbol")
    ap.add_argument("--modes", default="joey,pipeline")
    args = ap.parse_args()
    syms, modes = symbols(args.symbols), args.modes.split(",")
    split = Counter(shard_of(s, args.shards) for s in syms)
    fields = bar_fields(syms, args.bars) if "joey" in modes else []
    res = {m: {1: [], args.shards: []} for m in modes}
    rds = Redis()
    try:
        for i in range(args.runs):
            for n in (1, args.shards):  # interleaved: both counts see the same machine
                if "joey" in modes:
                    log(f"run {i + 1}: joey stage, {n} shard(s)")
                    res["joey"][n].append(joey_stage(rds, n, fields))
                if "pipeline" in modes:
                    log(f"run {i + 1}: whole pipeline, {n} shard(s)")
                    res["pipeline"][n].append(whole_pipeline(rds, n, syms, args.bars))
    finally:
        rds.close()
    print(f"ARK scale-out benchmark: 1 vs {args.shards} Joey shards, one redis-server, medians "
          f"of {args.runs}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"{len(syms)} symbols split {dict(sorted(split.items()))} over the shards")
    if "joey" in modes:
        report(f"Joey stage alone ({len(fields)} bars, prefilled)",
               ["bars_s", "joey_us", "redis_us", "patterns"], res["joey"])
    if "pipeline" in modes:
        report(f"whole pipeline saturated ({args.bars * len(syms)} bars)",
               ["bars_s", "dec_s", "decisions"], res["pipeline"])
    return 0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
