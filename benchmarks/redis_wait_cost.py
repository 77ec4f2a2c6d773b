"""What WAIT on every commit costs (issue #20 §1), side by side in the same run.

    .venv/bin/python benchmarks/redis_wait_cost.py [--runs 3] [--bars 1500] [--symbols 8]
        [--rate 1000] [--min-samples 5000] [--paced-runs 1] [--modes saturated,paced]

One redis-server with a replica attached (asynchronous replication on loopback, as a primary
and its replica would run on two hosts of an HA inventory, minus the network). The agents of
this tree run twice per round, interleaved: `wait0` with ARK_BUS_WAIT_REPLICAS=0 (commits
replicate in the background) and `wait1` with ARK_BUS_WAIT_REPLICAS=1 (each commit waits for
the replica's acknowledgement before the agent goes on). The measurements are
benchmarks/pipeline_throughput.py's: saturated bars/s and CPU per bar, and the paced
emit -> decision latency with each hop's p99. Medians over --runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline_throughput as pt  # noqa: E402

MODES = {"wait0": {"ARK_BUS_WAIT_REPLICAS": "0"}, "wait1": {"ARK_BUS_WAIT_REPLICAS": "1"}}


class Replica:
    """A redis-server following `primary` (no persistence of its own, like the primary here)."""

    def __init__(self, primary: pt.Redis) -> None:
        self.dir = Path(primary.dir) / "replica"
        self.dir.mkdir()
        self.port = pt.free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--requirepass", primary.password, "--masterauth", primary.password,
             "--replicaof", "127.0.0.1", str(primary.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=primary.password, decode_responses=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.info("replication").get("master_link_status") == "up":
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not sync")
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--paced-runs", type=int, default=1)
    ap.add_argument("--bars", type=int, default=1500, help="bars per symbol, saturated")
    ap.add_argument("--symbols", type=int, default=8)
    ap.add_argument("--rate", type=float, default=1000.0, help="bars/s, paced")
    ap.add_argument("--min-samples", type=int, default=5000, help="decisions, paced")
    ap.add_argument("--modes", default="saturated,paced")
    args = ap.parse_args()
    symbols, modes = pt.SYMBOLS[: args.symbols], set(args.modes.split(","))
    res: dict[str, dict[str, list[dict[str, float]]]] = {
        m: {w: [] for w in MODES} for m in ("saturated", "paced")}
    rds = pt.Redis()
    replica = Replica(rds)
    try:
        for i in range(args.runs if "saturated" in modes else 0):
            for name, env in MODES.items():  # interleaved: both see the same machine
                pt.TREE_ENV[pt.REPO] = env
                pt.log(f"run {i + 1}: {name} saturated")
                res["saturated"][name].append(pt.saturated(pt.REPO, rds, symbols, args.bars))
        for i in range(args.paced_runs if "paced" in modes else 0):
            for name, env in MODES.items():
                pt.TREE_ENV[pt.REPO] = env
                pt.log(f"run {i + 1}: {name} paced at {args.rate:g} bars/s")
                res["paced"][name].append(pt.paced(pt.REPO, rds, symbols, args.rate,
                                                   args.min_samples))
    finally:
        replica.close()
        rds.close()
    print(f"WAIT on every commit vs none, a replica attached either way; medians; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    pt.report(f"saturated ({args.bars * len(symbols)} bars, {len(symbols)} symbols)",
              ["bars_s", "dec_s", "cpu_us_bar", "decisions"], res["saturated"])
    pt.report(f"paced (requested {args.rate:g} bars/s, >= {args.min_samples} samples)",
              ["achieved", "samples", "p50", "p99", "max"], res["paced"])
    pt.report("paced: p99 ms of each hop", ["joey_p99", "kenny_p99", "hrm_p99", "stream_p99"],
              res["paced"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
