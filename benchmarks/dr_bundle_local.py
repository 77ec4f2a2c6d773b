"""DR bundle benchmark (REC_03): how long `ark dr bundle` takes for 200 MB of logs + state.

    .venv/bin/python benchmarks/dr_bundle_local.py [--mb 200] [--runs 3] [--levels 1,3,6]

Fills a temp host tree (ARK_ROOT_PREFIX layout) with:
* JSON log lines shaped like ARK's (ts, level, agent, host, correlation/message ids, event,
  symbol, prices), spread over the four agents' logs, their rotated `.1` files, already-
  compressed `.N.gz` rotations (as logrotate leaves them) and an audit log;
* a memory store (real MemoryStore, WAL) with plans and decisions, snapshotted twice;
until logs + state reach --mb megabytes. Then times `create_bundle` (median of --runs, each
including the fresh snapshot and verifying the snapshots it includes) per gzip level and
reports seconds, MB/s of input, bundle size and ratio. Also times `verify_bundle`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ark_runtime.host.dr.bundle import create_bundle  # noqa: E402
from ark_runtime.host.dr.format import Sources  # noqa: E402
from ark_runtime.host.dr.restore import verify_bundle  # noqa: E402
from ark_runtime.host.snapshot.snapshots import create_snapshot  # noqa: E402
from ark_runtime.store import MemoryStore  # noqa: E402

AGENTS = ("kyle", "joey", "kenny", "hrm")
EVENTS = ("bar_emitted", "pattern_detected", "plan_built", "decision", "ack", "heartbeat")
SYMBOLS = ("AAPL", "MSFT", "BTC-USD", "ETH-USD", "BRK.B", "NVDA", "TSLA", "SPY")


def log_lines(rng: random.Random, agent: str, start: datetime, target_bytes: int) -> bytes:
    out, size, t = [], 0, start
    host = "ark-lab-1"
    while size < target_bytes:
        t += timedelta(microseconds=rng.randint(200, 20000))
        price = round(rng.uniform(10, 500), 4)
        line = json.dumps({
            "ts": t.isoformat(timespec="microseconds"),
            "level": rng.choice(("info", "info", "info", "debug", "warning")),
            "agent": agent,
            "host": host,
            "pid": 4242,
            "correlation_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "message_id": f"{int(t.timestamp() * 1000)}-{rng.randint(0, 9)}",
            "event": rng.choice(EVENTS),
            "msg": "processed message",
            "symbol": rng.choice(SYMBOLS),
            "close": price,
            "volume": rng.randint(1000, 5_000_000),
            "confidence": round(rng.random(), 4),
            "stop_loss": round(price * 0.97, 4),
        }, separators=(",", ":")) + "\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()


def fill(root: Path, total_mb: int) -> dict[str, int]:
    env = {"ARK_ROOT_PREFIX": str(root)}
    src = Sources.from_env(env)
    src.log.mkdir(parents=True)
    rng = random.Random(7)
    # State first (~10% of the total), so logs fill the rest.
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    with MemoryStore(src.store) as store:
        i = 0
        while src.store.stat().st_size < total_mb * 1024 * 1024 // 10:
            with store.transaction():
                for _ in range(500):
                    p = store.save("plan", {"symbol": rng.choice(SYMBOLS), "n": i,
                                            "entry": rng.uniform(10, 500), "direction": "long",
                                            "notes": uuid.UUID(int=rng.getrandbits(128)).hex})
                    store.record_decision(f"c-{i}", p, bool(i % 2), [])
                    i += 1
            store.pragma("wal_checkpoint")
    for reason in ("interval", "interval"):
        create_snapshot(reason, store=src.store, root=src.snapshots, config_dir=src.config)
    state_bytes = sum(p.stat().st_size for p in src.state.rglob("*") if p.is_file())
    remaining = total_mb * 1024 * 1024 - state_bytes
    # 4 agents x (live + .1 + .2.gz) + audit; .gz rotations hold 1/4 of an uncompressed one.
    per_file = remaining // (len(AGENTS) * 2 + 1)
    for n, agent in enumerate(AGENTS):
        start = t0 + timedelta(days=n)
        (src.log / f"{agent}.log").write_bytes(log_lines(rng, agent, start, per_file))
        (src.log / f"{agent}.log.1").write_bytes(log_lines(rng, agent, start, per_file))
        rotated = log_lines(rng, agent, start, per_file // 4)
        (src.log / f"{agent}.log.2.gz").write_bytes(gzip.compress(rotated, 6))
    (src.log / "audit.log").write_bytes(log_lines(rng, "audit", t0, per_file))
    logs = sum(p.stat().st_size for p in src.log.rglob("*") if p.is_file())
    return {"logs": logs, "state": state_bytes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--levels", default="1,3,6")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ark-dr-bench-"))
    t = time.monotonic()
    sizes = fill(tmp / "host", args.mb)
    total = sizes["logs"] + sizes["state"]
    print(f"filled {tmp / 'host'} in {time.monotonic() - t:.1f} s: logs {sizes['logs'] / 1e6:.1f}"
          f" MB + state {sizes['state'] / 1e6:.1f} MB = {total / 1e6:.1f} MB "
          f"({os.cpu_count()} CPUs)")
    src = Sources.from_env({"ARK_ROOT_PREFIX": str(tmp / "host")})
    results = []
    for level in (int(x) for x in args.levels.split(",")):
        secs, last = [], None
        for run in range(args.runs):
            out = tmp / f"bundle-{level}-{run}.tar.gz"
            res = create_bundle(out, src=src, level=level, n_snapshots=3)
            secs.append(res.seconds)
            last = res
            if run < args.runs - 1:
                out.unlink()
            # Keep the snapshot count steady across runs (each bundle takes a fresh one).
            snaps = sorted(p for p in src.snapshots.iterdir() if not p.name.startswith("."))
            for old in snaps[:-3]:
                for f in old.iterdir():
                    f.unlink()
                old.rmdir()
        assert last is not None
        t = time.monotonic()
        verify_bundle(last.path)
        vsec = time.monotonic() - t
        med = statistics.median(secs)
        results.append((level, med, last.size, vsec))
        print(f"gzip level {level}: bundle median {med:.2f} s (runs "
              f"{', '.join(f'{s:.2f}' for s in secs)}), {total / 1e6 / med:.0f} MB/s in, "
              f"size {last.size / 1e6:.1f} MB ({last.size / total:.1%}), "
              f"verify {vsec:.2f} s")
        last.path.unlink()
    if not args.keep:
        import shutil

        shutil.rmtree(tmp)
    print(json.dumps({"input_bytes": total, "results": [
        {"level": lv, "median_s": round(m, 3), "size": s, "verify_s": round(v, 3)}
        for lv, m, s, v in results]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
