#!/usr/bin/env python3
"""REC_01: wall time of `invoke panic` until no ARK process remains, on 1 and 4 lab hosts.

    sudo .venv/bin/python benchmarks/panic_timing.py [--hosts 1,4] [--users root,deploy]
                                                     [--runs 3]

For each SSH user and fleet size: lab up (`--user deploy`: a non-root operator whose every
command goes through sudo, root login disabled), deploy, then per run: recover (untimed),
wait until every host serves, panic (timed: from the call until every host has confirmed
that no process of user ark is left). Prints the median, min and max per (user, hosts),
root's beside deploy's. Destroys the current lab.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ark_ops.deploy import run as deploy_mod  # noqa: E402
from ark_ops.fleet.panic import panic, recover  # noqa: E402
from ark_ops.lab import lab  # noqa: E402
from ark_ops.lab.config import LabHost, LabPaths  # noqa: E402
from ark_ops.lab.ssh import ssh_argv  # noqa: E402


def quiet(*_a, **_k) -> None:
    pass


def all_serving(n: int) -> bool:
    for i in range(1, n + 1):
        out = subprocess.run(ssh_argv(LabPaths.default(), LabHost(i), "pgrep", "-c", "-u", "ark"),
                             capture_output=True, text=True).stdout.strip()
        if not out.isdigit() or int(out) < 5:  # api + four agents
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,4")
    parser.add_argument("--users", default="root,deploy")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[tuple[str, int], list[float]] = {}
    for user, n in ((u, int(x)) for u in args.users.split(",") for x in args.hosts.split(",")):
        lab.down(log=quiet)
        lab.up(hosts=n, log=quiet, user=user)
        deploy_mod.deploy(echo=False, log=quiet)
        values = results[(user, n)] = []
        for run in range(args.runs):
            if run:
                recover(log=quiet)
            deadline = time.monotonic() + 120
            while not all_serving(n):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{n} host(s) did not come back after recover")
                time.sleep(0.5)
            outcomes, wall = panic(log=quiet)
            bad = [o for o in outcomes if not o.ok or o.value.remaining != 0]
            if bad:
                raise SystemExit(f"panic failed: {bad}")
            values.append(wall)
            print(f"{user}, {n} host(s), run {run + 1}: {wall:.3f}s", file=sys.stderr)
        recover(log=quiet)
    lab.down(log=quiet)
    print(f"\n{'user':<8}{'hosts':<8}{'median':>10}{'min':>10}{'max':>10}   (n={args.runs})")
    for (user, n), values in results.items():
        print(f"{user:<8}{n:<8}{statistics.median(values):>9.3f}s{min(values):>9.3f}s"
              f"{max(values):>9.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
