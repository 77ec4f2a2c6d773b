#!/usr/bin/env python3
"""Time `invoke verify` with the non-disruptive checks (issue #11: <= 60 s per host).

    sudo .venv/bin/python benchmarks/verify_timing.py [--hosts 1] [--runs 3]
        [--baseline 5eeee46] [--use-running-lab]

Brings the lab to --hosts hosts and deploys (unless --use-running-lab: a lab that is up
and deployed, e.g. by deploy_timing.py --fleet N --keep-fleet-up), then runs the compliance
suite without the disruptive checks --runs times; with --baseline REF, each run also runs
REF's suite (its conftest and ansible.cfg) right after, on the same hosts. Each figure is the
wall time of a child process doing `verify(keyword="not disruptive")`, start-up included.
Prints medians. Leaves the lab down unless --use-running-lab.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import baseline_tree  # noqa: E402

from ark_ops.deploy import run as deploy_mod  # noqa: E402
from ark_ops.lab import lab  # noqa: E402
from ark_ops.lab.config import LabPaths  # noqa: E402


def quiet(*_args, **_kwargs) -> None:
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", metavar="REF", help="also time the suite of this commit")
    parser.add_argument("--use-running-lab", action="store_true",
                        help="verify the lab as it is (up and deployed); leave it up")
    args = parser.parse_args()
    paths = LabPaths.default()
    inv = paths.inventory / "hosts.yml"
    if args.use_running_lab:
        hosts = sum(1 for s in lab.status() if s.running)
    else:
        lab.down(log=quiet)
        lab.up(hosts=args.hosts, log=quiet)
        deploy_mod.deploy(inventory=str(inv), echo=False, log=quiet)
        hosts = args.hosts
    trees = {"this tree": baseline_tree.REPO}
    rows: dict[str, list[float]] = {}
    failed: dict[str, list[int]] = {}
    with contextlib.ExitStack() as stack:
        if args.baseline:
            trees[f"baseline {args.baseline}"] = stack.enter_context(
                baseline_tree.checkout(args.baseline))
        reports = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for run in range(1, args.runs + 1):
            for name, tree in trees.items():
                seconds, rc = baseline_tree.run_in(tree, "verify", inv, reports)
                rows.setdefault(name, []).append(seconds)
                if rc != 0:
                    failed.setdefault(name, []).append(run)
                print(f"run {run}: {name} {seconds:.1f}s (pytest exit {rc})", file=sys.stderr)
    if not args.use_running_lab:
        lab.down(log=quiet)
    print(f"\nverify, non-disruptive checks, {hosts} host(s)")
    print(f"{'tree':<28}{'median':>10}{'min':>10}{'max':>10}{'n':>5}")
    for name, values in rows.items():
        print(f"{name:<28}{statistics.median(values):>9.1f}s{min(values):>9.1f}s"
              f"{max(values):>9.1f}s{len(values):>5}")
    for name, runs in failed.items():
        print(f"{name}: a check failed in run(s) {runs} (see reports/ of that tree)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
