#!/usr/bin/env python3
"""Memory and disk per lab host (issue #11: `lab.up --hosts 8` on 2 cores and 24 GiB).

    sudo .venv/bin/python benchmarks/lab_footprint.py [--hosts 8] [--deploy]
    sudo .venv/bin/python benchmarks/lab_footprint.py --use-running-lab

Brings the lab to --hosts hosts (after taking it down, to have a reference for the
machine's used memory), optionally deploys ARK onto them, waits --settle seconds, and
reports per host: PSS and RSS of every process of the host (the nspawn process tree: a
page shared by hosts counts once in PSS, spread over them), the host's overlay on disk,
and the machine's used memory and load. --use-running-lab measures the lab as it is.
Leaves the lab down unless --use-running-lab.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ark_ops.deploy import run as deploy_mod  # noqa: E402
from ark_ops.lab import host as hostmod  # noqa: E402
from ark_ops.lab import (
    image,  # noqa: E402
    lab,  # noqa: E402
)
from ark_ops.lab.config import LabPaths  # noqa: E402


def quiet(*_args, **_kwargs) -> None:
    pass


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sbx", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def host_memory(name: str) -> tuple[int, int, int]:
    """(PSS, RSS, process count) of the host's nspawn process and everything under it."""
    pss = rss = count = 0
    for pid in hostmod.nspawn_pids(name):
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            pss, rss, count = pss + info.pss, rss + info.rss, count + 1
    return pss, rss, count


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--deploy", action="store_true", help="deploy ARK before measuring")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds to wait before measuring (boot and start-up settle)")
    parser.add_argument("--use-running-lab", action="store_true")
    args = parser.parse_args()
    paths = LabPaths.default()
    used_before = None
    if not args.use_running_lab:
        lab.down(log=quiet)
        time.sleep(2)
        used_before = psutil.virtual_memory().used
        lab.up(hosts=args.hosts, log=quiet)
        if args.deploy:
            deploy_mod.deploy(inventory=str(paths.inventory / "hosts.yml"), echo=False,
                              log=quiet)
    time.sleep(args.settle)
    names = [s.name for s in lab.status() if s.running]
    rows = []
    for name in names:
        pss, rss, count = host_memory(name)
        rows.append((name, pss, rss, count, du(paths.host_dir(name) / "upper")))
    vm = psutil.virtual_memory()
    load = os.getloadavg()
    if not args.use_running_lab:
        lab.down(log=quiet)
    state = "deployed" if args.deploy or args.use_running_lab else "booted"
    print(f"\nlab of {len(names)} host(s), {state}; machine: {os.cpu_count()} CPUs, "
          f"{mib(vm.total)} RAM")
    print(f"{'host':<14}{'PSS':>12}{'RSS':>12}{'procs':>7}{'overlay disk':>14}")
    for name, pss, rss, count, disk in rows:
        print(f"{name:<14}{mib(pss):>12}{mib(rss):>12}{count:>7}{mib(disk):>14}")
    if rows:
        med = [statistics.median(r[i] for r in rows) for i in (1, 2, 4)]
        print(f"{'median':<14}{mib(med[0]):>12}{mib(med[1]):>12}{'':>7}{mib(med[2]):>14}")
        print(f"{'total':<14}{mib(sum(r[1] for r in rows)):>12}{'':>12}{'':>7}"
              f"{mib(sum(r[4] for r in rows)):>14}")
    if used_before is not None:
        grew = vm.used - used_before
        print(f"machine used memory grew by {mib(grew)} ({mib(grew / max(1, len(rows)))} per "
              f"host), {mib(vm.available)} still available")
    print(f"base image (shared by all hosts): {mib(du(image.image_path(paths.cache)))}")
    print(f"load average 1/5/15 min: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
