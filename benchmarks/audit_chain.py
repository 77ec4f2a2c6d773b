"""GOV_01 / SEC_03 speed: verifying a long audit chain, and what recording costs an action.

    .venv/bin/python benchmarks/audit_chain.py [--records 1000000] [--per-file 100000]
                                               [--runs 3] [--appends 300]

1. Chain verification: a chain of --records records in generations of --per-file (all but
   the live file and the newest rotated one gzip'd, as logrotate with delaycompress leaves
   them) is verified with `verify_dir`, the code behind `ark audit verify`. Baseline side by
   side: only reading and JSON-parsing the same files (no canonical form, no sha256), the
   floor any verifier has to pay. Medians of --runs.
2. Overhead per action: `AuditLog.append` (flock, O_APPEND write, fsync, head replaced
   atomically) and `audited()` around an empty block (two records), against the same empty
   block unrecorded. Medians over --appends. The control node adds one SSH round trip per
   target host (in parallel) after the action: see the e2e run in the report.

No lab, no root needed. The chain is generated with the real record format (seal + line_of);
appending 1 M records through AuditLog would measure fsync, not verification.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ark_runtime.host.audit.chain import (  # noqa: E402
    GENESIS,
    generation_files,
    line_of,
    read_bytes,
    seal,
    verify_dir,
)
from ark_runtime.host.audit.log import AuditLog, audited  # noqa: E402


def build(d: Path, records: int, per_file: int) -> None:
    prev, gens = GENESIS, []
    for start in range(0, records, per_file):
        lines = []
        for seq in range(start, min(records, start + per_file)):
            rec = seal({"seq": seq, "prev_hash": prev, "ts": "2026-11-26T12:00:00.000000Z",
                        "who": "bench@control", "action": "deploy", "args": {"limit": "web1",
                        "check": False}, "where": "web1", "result": "ok", "duration": 1.25,
                        "correlation_id": f"{seq:032x}", "detail": None,
                        "gen_start": seq == start})
            prev = rec["hash"]
            lines.append(line_of(rec))
        gens.append(b"".join(lines))
    n = len(gens)
    for i, data in enumerate(gens):
        age = n - 1 - i  # 0 = live file
        if age == 0:
            (d / "audit.log").write_bytes(data)
        elif age == 1:
            (d / "audit.log.1").write_bytes(data)
        else:
            (d / f"audit.log.{age}.gz").write_bytes(gzip.compress(data, 6))
    (d / "head.json").write_text(json.dumps({"seq": records - 1, "hash": prev}))


def parse_only(d: Path) -> int:
    n = 0
    for p in generation_files(d):
        for raw in read_bytes(p).split(b"\n"):
            if raw:
                json.loads(raw)
                n += 1
    return n


def timed(fn, runs: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def overhead(d: Path, n: int) -> dict[str, float]:
    log = AuditLog(d)
    appends = []
    for i in range(n):
        t0 = time.perf_counter()
        log.append(action="bench.append", result="ok", args={"i": i}, who="bench")
        appends.append(time.perf_counter() - t0)
    wrapped, bare = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        with audited("bench.action", {"x": 1}, who="bench", log=log):
            pass
        wrapped.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bare.append(time.perf_counter() - t0)
    return {"append_ms": statistics.median(appends) * 1e3,
            "audited_ms": statistics.median(wrapped) * 1e3,
            "bare_ms": statistics.median(bare) * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--per-file", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--appends", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ark-audit-bench-") as tmp:
        chain = Path(tmp) / "chain"
        chain.mkdir()
        t0 = time.perf_counter()
        build(chain, args.records, args.per_file)
        size = sum(p.stat().st_size for p in chain.iterdir())
        print(f"built {args.records:,} records in {len(generation_files(chain))} generations "
              f"({size / 1e6:.1f} MB on disk) in {time.perf_counter() - t0:.1f}s")
        t_verify, verdict = timed(lambda: verify_dir(chain), args.runs)
        assert verdict.ok and verdict.records == args.records, verdict.problem
        t_parse, parsed = timed(lambda: parse_only(chain), args.runs)
        assert parsed == args.records
        print(f"{'':<28}{'median s':>10}{'records/s':>14}")
        print(f"{'verify_dir (ark audit verify)':<28}{t_verify:>10.2f}"
              f"{args.records / t_verify:>14,.0f}")
        print(f"{'baseline: read + json only':<28}{t_parse:>10.2f}"
              f"{args.records / t_parse:>14,.0f}")
        live = Path(tmp) / "live"
        o = overhead(live, args.appends)
        fs = os.statvfs(tmp)
        print(f"\noverhead per action ({args.appends} runs, medians; temp fs block size "
              f"{fs.f_bsize}):")
        print(f"  one record (flock + write + fsync + head)   {o['append_ms']:8.3f} ms")
        print(f"  audited() around an empty block (2 records) {o['audited_ms']:8.3f} ms")
        print(f"  the same block, not recorded                {o['bare_ms']:8.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
