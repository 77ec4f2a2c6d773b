#!/usr/bin/env python3
"""Measure the lab and the deploy: what issue #2 asks to report.

    sudo .venv/bin/python benchmarks/deploy_timing.py [--runs 3] [--image]

For each run: lab down, `lab.up` of 1 host (timed), cold deploy (timed), re-deploy
with nothing to change (timed), then `lab.up` of 4 hosts from scratch (timed).
Disk: the base image, one host's overlay after boot and after deploy, the wheelhouse.
--image also times a cold base-image build (debootstrap), once.
Prints medians over the runs. Destroys the current lab.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ark_ops import deploy as deploy_mod  # noqa: E402
from ark_ops.lab import image, lab  # noqa: E402
from ark_ops.lab.config import LabPaths  # noqa: E402


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def timed(fn, *args, **kwargs) -> float:
    started = time.monotonic()
    fn(*args, **kwargs)
    return time.monotonic() - started


def quiet(*_args, **_kwargs) -> None:
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", action="store_true", help="also time a cold image build")
    args = parser.parse_args()
    paths = LabPaths.default()
    rows: dict[str, list[float]] = {k: [] for k in
                                    ("lab.up 1 host", "cold deploy", "re-deploy", "lab.up 4 hosts")}
    disk: dict[str, int] = {}
    if args.image:
        with tempfile.TemporaryDirectory(dir=paths.cache) as scratch:
            t = timed(image.ensure_base_image, Path(scratch), log=quiet)
            print(f"cold base image build: {t:.1f}s")
    for run in range(1, args.runs + 1):
        lab.down(log=quiet)
        rows["lab.up 1 host"].append(timed(lab.up, hosts=1, log=quiet))
        host_dir = paths.host_dir("ark-lab-1") / "upper"
        disk["host overlay after boot"] = du(host_dir)
        rows["cold deploy"].append(timed(deploy_mod.deploy, echo=False, log=quiet))
        disk["host overlay after deploy"] = du(host_dir)
        started = time.monotonic()
        again = deploy_mod.deploy(echo=False, log=quiet)
        rows["re-deploy"].append(time.monotonic() - started)
        if any(again.changed.values()):
            print(f"warning: re-deploy changed something: {again.changed}", file=sys.stderr)
        lab.down(log=quiet)
        rows["lab.up 4 hosts"].append(timed(lab.up, hosts=4, log=quiet))
        disk["4 host overlays after boot"] = sum(
            du(paths.host_dir(f"ark-lab-{i}") / "upper") for i in range(1, 5))
        print(f"run {run}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in rows.items()),
              file=sys.stderr)
    lab.down(log=quiet)
    disk["base image (shared, cached)"] = du(image.image_path(paths.cache))
    disk["wheelhouse"] = du(deploy_mod.WHEELHOUSE)
    print(f"\n{'measure':<32}{'median':>10}{'min':>10}{'max':>10}   (n={args.runs})")
    for name, values in rows.items():
        print(f"{name:<32}{statistics.median(values):>9.1f}s{min(values):>9.1f}s"
              f"{max(values):>9.1f}s")
    print(f"\n{'disk':<32}{'size':>12}")
    for name, size in disk.items():
        print(f"{name:<32}{mb(size):>12}")
    free = shutil.disk_usage(paths.state).free
    print(f"{'(free on the lab filesystem)':<32}{mb(free):>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
