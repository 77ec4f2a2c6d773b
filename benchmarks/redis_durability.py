"""The cost of Redis durability settings on the whole pipeline (issue #19), side by side.

    .venv/bin/python benchmarks/redis_durability.py [--runs 3] [--bars 8000] [--symbols 16]
        [--modes always,everysec,off]

Each run: a fresh redis-server on the local disk (ext4 here, so an fsync is a real one) with
the mode's persistence, the four agents as real processes, Kyle replaying --bars synthetic
bars unpaced; timed from Kyle's start to the last decision with every inbox drained.
Modes: `always` = appendonly yes + appendfsync always (the role's default), `everysec` =
appendonly yes + appendfsync everysec, `off` = RDB only (the old default; no save during a
run this short). Runs are interleaved (always, everysec, off, always, ...) and medians
reported, with redis-server's CPU time per 1,000 bars.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from redis_proc import RedisProc  # noqa: E402

from ark_runtime.bus.streams import DECISIONS_STREAM, inbox  # noqa: E402

CONSUMERS = ("hrm", "kenny", "joey")
MODES = {"always": ["--appendonly", "yes", "--appendfsync", "always"],
         "everysec": ["--appendonly", "yes", "--appendfsync", "everysec"],
         "off": ["--appendonly", "no"]}


def one_run(mode: str, bars: int, symbols: int) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="ark-durability-", dir="/var/tmp"))
    with RedisProc(*MODES[mode], "--dir", str(workdir)) as server, \
            tempfile.TemporaryDirectory(prefix="ark-durability-world-") as root:
        r = server.client()
        redis_ps = psutil.Process(server.proc.pid)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ARK_", "NOTIFY_"))}
        env.update({"PYTHONPATH": str(REPO), "ARK_REDIS_PORT": str(server.port),
                    "ARK_REDIS_PASSWORD": server.password, "ARK_STATE_DIR": f"{root}/state",
                    "ARK_LOG_DIR": f"{root}/log", "ARK_RUN_DIR": f"{root}/run"})
        procs = [subprocess.Popen([sys.executable, "-m", "ark_runtime.cli", "agent", n],
                                  env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for n in CONSUMERS]
        try:
            _wait(lambda: all(r.exists(inbox(n)) for n in CONSUMERS), 60)
            names = ",".join(f"S{k:03d}" for k in range(symbols))
            per_symbol = bars // symbols
            cpu0 = sum(redis_ps.cpu_times()[:2])
            t0 = time.monotonic()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "ark_runtime.cli", "agent", "kyle"],
                env={**env, "ARK_FEED": "synthetic", "ARK_FEED_SYMBOLS": names,
                     "ARK_FEED_BARS": str(per_symbol)},
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            total = per_symbol * symbols
            _wait(lambda: _done(r, total), 600)
            elapsed = time.monotonic() - t0
            cpu = sum(redis_ps.cpu_times()[:2]) - cpu0
            return {"bars_s": total / elapsed, "redis_cpu_ms_per_kbar": cpu * 1e6 / total,
                    "decisions": r.xlen(DECISIONS_STREAM)}
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
            subprocess.run(["rm", "-rf", str(workdir)], check=False)


def _done(r, total: int) -> bool:
    key = next(r.scan_iter("ark:kyle:cursor:*"), None)
    if key is None or int(r.get(key) or 0) < total:
        return False
    return all(g["pending"] == 0 and not g.get("lag")
               for n in CONSUMERS for g in r.xinfo_groups(inbox(n)))


def _wait(pred, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bars", type=int, default=8000)
    ap.add_argument("--symbols", type=int, default=16)
    ap.add_argument("--modes", default="always,everysec,off")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for i in range(args.runs):
        for mode in modes:
            res = one_run(mode, args.bars, args.symbols)
            results[mode].append(res)
            print(f"run {i + 1} {mode:8} {res['bars_s']:8.0f} bars/s  redis "
                  f"{res['redis_cpu_ms_per_kbar']:6.1f} ms CPU / 1,000 bars  "
                  f"{res['decisions']:.0f} decisions", flush=True)
    print(f"\n{args.bars} bars, {args.symbols} symbols, {args.runs} runs each, medians")
    print("| appendfsync | bars/s end to end | vs off | redis CPU ms / 1,000 bars |")
    print("|---|---|---|---|")
    base = statistics.median(x["bars_s"] for x in results.get("off", [])) \
        if "off" in results else None
    for mode in modes:
        rate = statistics.median(x["bars_s"] for x in results[mode])
        cpu = statistics.median(x["redis_cpu_ms_per_kbar"] for x in results[mode])
        rel = f"{rate / base:.2f}x" if base else "n/a"
        print(f"| {mode} | {rate:.0f} | {rel} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
