#!/usr/bin/env python3
"""REC_03: `invoke dr-bundle` on a lab host holding 200 MB of logs and state.

    sudo .venv/bin/python benchmarks/dr_bundle_lab.py [--mb 200] [--runs 3]

Brings up one lab host, deploys, fills /var/log/ark with realistic JSON log lines
(live files and rotated ones) until logs + state reach --mb, then times dr-bundle:
the archive build on the host, the fetch, and the whole command; median of --runs.
Destroys the current lab.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ark_ops.deploy import run as deploy_mod  # noqa: E402
from ark_ops.fleet.dr import dr_bundle  # noqa: E402
from ark_ops.lab import lab  # noqa: E402
from ark_ops.lab.config import LabHost, LabPaths  # noqa: E402
from ark_ops.lab.ssh import ssh_argv  # noqa: E402

# Runs on the host: JSON lines like the agents write, varied enough not to compress
# unrealistically well.
FILL = r"""
import json, os, random, sys, uuid
target = int(sys.argv[1]) * 1_000_000
log_dir = "/var/log/ark"
def used():
    total = 0
    for d in ("/var/log/ark", "/var/lib/ark"):
        for root, _, files in os.walk(d):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total
rnd = random.Random(7)
agents = ["kyle", "joey", "kenny", "hrm"]
n = 0
while used() < target:
    agent = agents[n % 4]
    path = os.path.join(log_dir, f"{agent}.log.{1 + n // 4}")
    with open(path, "w") as f:
        for _ in range(40000):
            f.write(json.dumps({
                "ts": f"2026-11-{rnd.randint(1, 26):02d}T{rnd.randint(0, 23):02d}:"
                      f"{rnd.randint(0, 59):02d}:{rnd.random() * 60:09.6f}+00:00",
                "level": rnd.choice(["INFO", "INFO", "INFO", "WARNING", "DEBUG"]),
                "agent": agent, "msg": rnd.choice(["received market.bar", "emitted pattern",
                "decided", "acked", "claimed idle message"]),
                "correlation_id": str(uuid.UUID(int=rnd.getrandbits(128))),
                "message_id": str(uuid.UUID(int=rnd.getrandbits(128))),
                "symbol": rnd.choice(["AAPL", "BRK.B", "BTC-USD", "ETH-USDT"]),
                "price": round(rnd.uniform(10, 60000), 4),
            }) + "\n")
    os.chown(path, os.stat(log_dir).st_uid, os.stat(log_dir).st_gid)
    n += 1
print(used())
"""


def on_host(*cmd: str, stdin: str | None = None) -> str:
    proc = subprocess.run(ssh_argv(LabPaths.default(), LabHost(1), *cmd), input=stdin,
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    lab.down(log=lambda *_: None)
    lab.up(hosts=1, log=lambda *_: None)
    deploy_mod.deploy(echo=False, log=lambda *_: None)
    time.sleep(10)  # let the pipeline write its own state first
    used = int(on_host("python3", "-", str(args.mb), stdin=FILL))
    print(f"logs + state on the host: {used / 1e6:.1f} MB", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for run in range(args.runs):
            started = time.monotonic()
            outcome = dr_bundle(out_dir=Path(out), log=lambda *_: None)[0]
            total = time.monotonic() - started
            if not outcome.ok:
                raise SystemExit(f"dr-bundle failed: {outcome.error}")
            b = outcome.value
            rows.append((b.host_seconds, b.fetch_seconds, total, b.size))
            print(f"run {run + 1}: build {b.host_seconds:.2f}s fetch {b.fetch_seconds:.2f}s "
                  f"total {total:.2f}s size {b.size / 1e6:.1f} MB", file=sys.stderr)
            b.local.unlink()
    lab.down(log=lambda *_: None)
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(f"\ninput {used / 1e6:.1f} MB of logs + state, {args.runs} runs (median)")
    print(f"  build on host   {med[0]:.2f}s")
    print(f"  fetch           {med[1]:.2f}s")
    print(f"  whole command   {med[2]:.2f}s")
    print(f"  bundle size     {med[3] / 1e6:.1f} MB ({med[3] / used:.0%} of input)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
