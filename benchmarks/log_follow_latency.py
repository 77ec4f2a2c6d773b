"""`invoke logs --follow` write -> display latency across lab hosts (LOG_02).

    .venv/bin/python benchmarks/log_follow_latency.py [--inventory inventory/lab/hosts.yml]
        [--runs 3] [--lines 200] [--rate 20]

Needs a deployed lab of 2+ hosts (`invoke lab.up --hosts 2 && invoke deploy`), run as
root. On every host at once a writer appends JSON lines stamped with the time of the write
(the lab hosts share this machine's clock) to /var/log/ark/benchfollow.log at --rate lines/s;
ark_ops.fleet.logs.follow streams every host as `invoke logs --follow` does and the time each
line is displayed is taken. Side by side:
* baseline: reorder window 0, i.e. the SSH hop and `tail -F` alone;
* ark: the default reorder window (hosts interleaved by time).
Prints write->display p50/p99 (ms), medians over --runs, and checks that no remote tail is
left behind afterwards.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ark_ops.fleet.logs import Filters, Printer, Record, follow, ssh_argv  # noqa: E402
from ark_ops.fleet.ssh import inventory_hosts  # noqa: E402

BENCH_LOG = "/var/log/ark/benchfollow.log"
WRITER = """
import json, sys, time
from datetime import datetime, timezone
n, rate = int(sys.argv[1]), float(sys.argv[2])
with open(sys.argv[3], "a", buffering=1) as fh:
    for i in range(n):
        fh.write(json.dumps({"ts": datetime.now(timezone.utc).isoformat(), "level": "info",
                             "agent": "benchfollow", "msg": "x", "seq": i}) + "\\n")
        time.sleep(1 / rate)
"""


class Clock(Printer):
    def __init__(self) -> None:
        super().__init__(io.StringIO(), raw_json=False, color=False)
        self.latencies: list[float] = []

    def print(self, rec: Record) -> None:
        if rec.agent == "benchfollow":
            self.latencies.append((datetime.now(UTC) - rec.ts).total_seconds() * 1000)

    def note(self, text: str) -> None:
        print(f"  note: {text}", file=sys.stderr)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def on(host, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(ssh_argv(host, command), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)


def one_run(hosts, window: float, lines: int, rate: float) -> list[float]:
    for h in hosts:  # tail -F's glob is expanded at start: the file must exist first
        on(h, f"install -o ark -g ark -m 0640 /dev/null {BENCH_LOG}")
    clock, stop = Clock(), threading.Event()
    t = threading.Thread(target=follow, args=(hosts, Filters(agent="benchfollow"), clock),
                         kwargs={"window": window, "stop": stop})
    t.start()
    time.sleep(2)  # every tail running
    writers = [subprocess.Popen(ssh_argv(h, "python3 -c " + _q(WRITER) + f" {lines} {rate} "
                                         + BENCH_LOG), stdin=subprocess.DEVNULL)
               for h in hosts]
    for w in writers:
        w.wait(600)
    deadline = time.monotonic() + 10
    while len(clock.latencies) < lines * len(hosts) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    t.join(30)
    if len(clock.latencies) != lines * len(hosts):
        print(f"  warning: displayed {len(clock.latencies)} of {lines * len(hosts)} lines",
              file=sys.stderr)
    return clock.latencies


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inventory", default=str(REPO / "inventory" / "lab" / "hosts.yml"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lines", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0)
    args = ap.parse_args()
    hosts = inventory_hosts(Path(args.inventory))
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "ark": []}
    try:
        for run in range(args.runs):
            for mode, window in (("baseline", 0.0), ("ark", 0.25)):
                print(f"run {run + 1}/{args.runs}: {mode} on {len(hosts)} hosts ...",
                      file=sys.stderr)
                lat = one_run(hosts, window, args.lines, args.rate)
                results[mode].append((pct(lat, 0.5), pct(lat, 0.99)))
    finally:
        left = {h.name: on(h, "pgrep -af '[t]ail -q -n 0' || true").stdout.strip()
                for h in hosts}
        for h in hosts:
            on(h, f"rm -f {BENCH_LOG}")
    print(f"\ninvoke logs --follow, write -> display (median of {args.runs} runs, "
          f"{len(hosts)} hosts x {args.lines} lines at {args.rate:g}/s)")
    print(f"{'mode':<10} {'p50 ms':>8} {'p99 ms':>8}")
    for mode, rows in results.items():
        print(f"{mode:<10} {statistics.median(r[0] for r in rows):8.1f} "
              f"{statistics.median(r[1] for r in rows):8.1f}")
    stray = {k: v for k, v in left.items() if v}
    print("remote tails left behind: " + (str(stray) if stray else "none"))
    return 1 if stray else 0


if __name__ == "__main__":
    sys.exit(main())
