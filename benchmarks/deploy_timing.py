#!/usr/bin/env python3
"""Measure the lab and the deploy: what issues #2 and #11 ask to report.

    sudo .venv/bin/python benchmarks/deploy_timing.py [--runs 3] [--redeploys 1] [--image]
        [--linear] [--no-four]
        [--baseline f0771c7] [--fleet 8 [--keep-fleet-up]]

For each run: lab down, `lab.up` of 1 host (timed), cold deploy (timed), --redeploys N
re-deploys with nothing to change (timed), then `lab.up` of 4 hosts from scratch (timed;
--no-four skips it).
--baseline REF also times, in each run, a re-deploy by the code of REF (a `git archive`
checkout: its roles and ansible.cfg) next to this tree's, on the same host (with
--baseline-cold also a cold deploy by REF on a fresh host).
Deploys use the toolkit's default strategy (mitogen_linear, ark_ops.deploy.playbook); --linear
also times, once in each run, this tree's re-deploy with Ansible's plain `linear` strategy
on the same host (ARK_OPS_ANSIBLE_STRATEGY=linear), and with --fleet the N-host re-deploy.
--fleet N then, once: `lab.up` of N hosts, a cold deploy onto all of them and a re-deploy,
and the cold deploy's ratio to the 1-host median (issue #11: at most 2.5x for 8 hosts).
--keep-fleet-up leaves that lab up and deployed for verify_timing.py / lab_footprint.py
(--use-running-lab); take it down inside the same lab lock.
Disk: the base image, one host's overlay after boot and after deploy, the wheelhouse.
--image also times a cold base-image build (debootstrap), once.
Prints medians over the runs. Destroys the current lab.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import baseline_tree  # noqa: E402

from ark_ops.deploy import playbook as ansible_run  # noqa: E402
from ark_ops.deploy import run as deploy_mod  # noqa: E402
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


# Machine-wide busy CPU while a cold deploy runs: the lab's hosts, Ansible and the control
# side all share this machine's cores, so busy core-seconds per host bound how far N hosts
# can go below N times one host's deploy here. (guest time is already counted in user.)
CPU_BUSY: dict[str, list[float]] = {}
# Of that, the control side's: Ansible and its workers (this process's waited-for children).
CPU_CONTROL: dict[str, list[float]] = {}


def busy_core_seconds() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def children_core_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cold_deploy(inventory: Path, what: str) -> float:
    """Seconds of a cold deploy by this tree; its busy core-seconds go to CPU_BUSY[what],
    the control side's share to CPU_CONTROL[what]."""
    before, control = busy_core_seconds(), children_core_seconds()
    seconds = timed_deploy(None, inventory)[0]
    CPU_BUSY.setdefault(what, []).append(busy_core_seconds() - before)
    CPU_CONTROL.setdefault(what, []).append(children_core_seconds() - control)
    return seconds


def timed_deploy(tree: Path | None, inventory: Path, strategy: str | None = None
                 ) -> tuple[float, dict[str, int]]:
    """(seconds, changed per host) of a deploy by this tree (None) with `strategy` (None:
    the toolkit's default), or by the baseline `tree` (its own ansible.cfg decides)."""
    if tree is None:
        started = time.monotonic()
        result = deploy_mod.deploy(inventory=str(inventory), echo=False, log=quiet,
                                   strategy=strategy)
        return time.monotonic() - started, result.changed
    seconds, changed = baseline_tree.run_in(tree, "deploy", inventory)
    return seconds, changed


@contextlib.contextmanager
def experiment(what: str):
    """A failed side measurement (plain linear, the baseline) is reported, and the
    benchmark goes on with the rest instead of losing the lab session."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any failure of the experiment is its result
        print(f"warning: {what} failed: {str(exc)[-1500:]}", file=sys.stderr)


def warn_if_changed(what: str, changed: dict[str, int]) -> None:
    if any(changed.values()):
        print(f"warning: {what} changed something: {changed}", file=sys.stderr)


def one_run(paths: LabPaths, rows: dict[str, list[float]], disk: dict[str, int],
            args: argparse.Namespace, base: Path | None) -> None:
    inv = paths.inventory / "hosts.yml"
    lab.down(log=quiet)
    rows["lab.up 1 host"].append(timed(lab.up, hosts=1, log=quiet))
    host_dir = paths.host_dir("ark-lab-1") / "upper"
    disk["host overlay after boot"] = du(host_dir)
    rows["cold deploy"].append(cold_deploy(inv, "cold deploy"))
    disk["host overlay after deploy"] = du(host_dir)
    for i in range(args.redeploys):
        seconds, changed = timed_deploy(None, inv)
        rows["re-deploy"].append(seconds)
        warn_if_changed("re-deploy", changed)
        if args.linear and i == 0:  # once per run, between two of the default's
            with experiment("linear re-deploy"):
                seconds, changed = timed_deploy(None, inv, "linear")
                rows["re-deploy (linear)"].append(seconds)
                warn_if_changed("linear re-deploy", changed)
    if base is not None:
        with experiment("baseline re-deploy"):
            seconds, changed = timed_deploy(base, inv)
            rows["re-deploy (baseline)"].append(seconds)
            warn_if_changed("baseline re-deploy", changed)
        seconds, changed = timed_deploy(None, inv)  # this tree again, after the baseline's
        rows["re-deploy"].append(seconds)
        warn_if_changed("re-deploy after the baseline's", changed)
    if "cold deploy (baseline)" in rows:
        lab.down(log=quiet)
        lab.up(hosts=1, log=quiet)
        with experiment("cold deploy (baseline)"):
            rows["cold deploy (baseline)"].append(timed_deploy(base, inv)[0])
    lab.down(log=quiet)
    if args.no_four:
        return
    rows["lab.up 4 hosts"].append(timed(lab.up, hosts=4, log=quiet))
    disk["4 host overlays after boot"] = sum(
        du(paths.host_dir(f"ark-lab-{i}") / "upper") for i in range(1, 5))


def fleet_run(paths: LabPaths, hosts: int, rows: dict[str, list[float]], linear: bool) -> None:
    inv = paths.inventory / "hosts.yml"
    lab.down(log=quiet)
    rows[f"lab.up {hosts} hosts"] = [timed(lab.up, hosts=hosts, log=quiet)]
    rows[f"cold deploy {hosts} hosts"] = [cold_deploy(inv, f"cold deploy {hosts} hosts")]
    seconds, changed = timed_deploy(None, inv)
    rows[f"re-deploy {hosts} hosts"] = [seconds]
    warn_if_changed(f"{hosts}-host re-deploy", changed)
    print("fleet: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in rows.items()
                                if f"{hosts} hosts" in k), file=sys.stderr)
    if linear:
        with experiment(f"{hosts}-host linear re-deploy"):
            seconds, changed = timed_deploy(None, inv, "linear")
            rows[f"re-deploy {hosts} hosts (linear)"] = [seconds]
            warn_if_changed(f"{hosts}-host linear re-deploy", changed)


def report(rows: dict[str, list[float]], disk: dict[str, int], paths: LabPaths,
           fleet: int) -> None:
    print(f"\ndeploys use {ansible_run.ansible_strategy()} unless a row says otherwise")
    print(f"{'measure':<32}{'median':>10}{'min':>10}{'max':>10}{'n':>5}")
    for name, values in rows.items():
        if values:
            print(f"{name:<32}{statistics.median(values):>9.1f}s{min(values):>9.1f}s"
                  f"{max(values):>9.1f}s{len(values):>5}")
    one, many = rows.get("cold deploy"), rows.get(f"cold deploy {fleet} hosts")
    if fleet and one and many:
        print(f"\ncold deploy onto {fleet} hosts / onto 1 host: "
              f"{many[0] / statistics.median(one):.2f}x (goal <= 2.5x)")
    cores = psutil.cpu_count() or 1
    for name, busy in CPU_BUSY.items():
        wall = statistics.median(rows[name])
        control = statistics.median(CPU_CONTROL[name])
        print(f"{name}: {statistics.median(busy):.1f} busy core-s over {wall:.1f}s "
              f"({statistics.median(busy) / wall:.2f} of {cores} cores); control side "
              f"(Ansible) {control:.1f}, the hosts and the rest "
              f"{statistics.median(busy) - control:.1f}")
    if fleet and CPU_BUSY.get("cold deploy") and CPU_BUSY.get(f"cold deploy {fleet} hosts"):
        per_host = CPU_BUSY[f"cold deploy {fleet} hosts"][0] / fleet
        floor = fleet * per_host / cores / statistics.median(one)
        print(f"{fleet} hosts: {per_host:.1f} busy core-s per host; all {cores} cores busy the "
              f"whole time would still take {floor:.2f}x one host's deploy")
    print(f"\n{'disk':<32}{'size':>12}")
    for name, size in disk.items():
        print(f"{name:<32}{mb(size):>12}")
    free = shutil.disk_usage(paths.state).free
    print(f"{'(free on the lab filesystem)':<32}{mb(free):>12}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", action="store_true", help="also time a cold image build")
    parser.add_argument("--baseline", metavar="REF", help="also time the deploy of this commit")
    parser.add_argument("--baseline-cold", action="store_true",
                        help="with --baseline, also time its cold deploy in each run")
    parser.add_argument("--linear", action="store_true",
                        help="also time re-deploys with Ansible's plain linear strategy")
    parser.add_argument("--redeploys", type=int, default=1, metavar="N",
                        help="no-change re-deploys timed in each run (default 1)")
    parser.add_argument("--no-four", action="store_true",
                        help="skip the 4-host lab.up of each run (a shorter lab session)")
    parser.add_argument("--fleet", type=int, default=0, metavar="N",
                        help="then time a cold deploy onto N hosts, once")
    parser.add_argument("--keep-fleet-up", action="store_true",
                        help="leave the --fleet lab up (take it down inside the lab lock)")
    args = parser.parse_args()
    paths = LabPaths.default()
    names = ["lab.up 1 host", "cold deploy", "re-deploy"] + ([] if args.no_four
                                                              else ["lab.up 4 hosts"])
    if args.baseline:
        names[2:2] = ["re-deploy (baseline)"] + (
            ["cold deploy (baseline)"] if args.baseline_cold else [])
    if args.linear:
        names.insert(names.index("re-deploy") + 1, "re-deploy (linear)")
    rows: dict[str, list[float]] = {k: [] for k in names}
    disk: dict[str, int] = {}
    if args.image:
        with tempfile.TemporaryDirectory(dir=paths.cache) as scratch:
            t = timed(image.ensure_base_image, Path(scratch), log=quiet)
            print(f"cold base image build: {t:.1f}s")
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(baseline_tree.checkout(args.baseline)) if args.baseline \
            else None
        for run in range(1, args.runs + 1):
            one_run(paths, rows, disk, args, base)
            print(f"run {run}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in rows.items() if v),
                  file=sys.stderr)
    if args.fleet:
        fleet_run(paths, args.fleet, rows, args.linear)
    if not (args.fleet and args.keep_fleet_up):
        lab.down(log=quiet)
    disk["base image (shared, cached)"] = du(image.image_path(paths.cache))
    disk["wheelhouse"] = du(deploy_mod.WHEELHOUSE)
    report(rows, disk, paths, args.fleet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
