"""What the Redis dump adds to a DR bundle (issue #19 §5, REC_03).

    .venv/bin/python benchmarks/dr_redis_dump.py [--entries 300000] [--runs 5]

Fills a real redis-server with bus-shaped streams (bars into Kyle's, Joey's and Kenny's
inboxes, each with its consumer group and some entries pending), then times, median of
--runs, side by side in the same run:

* baseline: BGSAVE, wait for it, copy dump.rdb (the least any RDB in a bundle costs);
* dump_into: the same plus loading the copy in a scratch redis-server and recording every
  stream's length and groups (what `ark dr bundle` does: the manifest's `redis` entry).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from redis_proc import RedisProc  # noqa: E402

from ark_runtime.host.dr.redis_dump import RedisFiles, bgsave, dump_into  # noqa: E402

STREAMS = ("ark:stream:kyle", "ark:stream:joey", "ark:stream:kenny")


def fill(r, entries: int) -> None:
    per = entries // len(STREAMS)
    for stream in STREAMS:
        group = stream.rsplit(":", 1)[1]
        r.xgroup_create(stream, group, id="0", mkstream=True)
        for start in range(0, per, 1000):
            pipe = r.pipeline(transaction=False)
            for i in range(start, min(per, start + 1000)):
                pipe.xadd(stream, {"symbol": "AAPL", "ts": str(i), "open": "101.25",
                                   "high": "101.9", "low": "100.8", "close": "101.5",
                                   "volume": "12000"})
            pipe.execute()
        r.xreadgroup(group, f"{group}@bench", {stream: ">"}, count=100)  # pending


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=300_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with RedisProc() as server:
        r = server.client()
        fill(r, args.entries)
        os.environ["ARK_REDIS_PASSWORD"] = server.password  # the host's settings
        files = RedisFiles(Path("/dev/null"), server.dir, "dump.rdb", "appendonlydir", False,
                           server.port)
        out = Path(tempfile.mkdtemp(prefix="ark-dr-redis-bench-"))
        base, full = [], []
        try:
            for _ in range(args.runs):
                t = time.monotonic()
                bgsave(r)
                shutil.copyfile(files.rdb, out / "baseline.rdb")
                base.append(time.monotonic() - t)
                t = time.monotonic()
                entry = dump_into(files, out / "dump.rdb")
                full.append(time.monotonic() - t)
            size = (out / "dump.rdb").stat().st_size
        finally:
            shutil.rmtree(out, ignore_errors=True)
    b, f = statistics.median(base), statistics.median(full)
    print(f"{args.entries} stream entries, RDB {size / 1e6:.1f} MB, {os.cpu_count()} CPUs")
    print(f"baseline BGSAVE + copy: median {b:.3f} s; dump_into (+ scratch load + summary): "
          f"median {f:.3f} s (+{f - b:.3f} s)")
    print(json.dumps({"entries": args.entries, "rdb_bytes": size, "baseline_s": round(b, 3),
                      "dump_into_s": round(f, 3), "streams": len(entry["streams"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
