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
--scaling 1,2,4,8 (issue #23 §1) then, for each N: `lab.up` of N hosts, a cold deploy and a
no-change re-deploy, each with its busy core-seconds split into the control side (Ansible and
its workers), Ansible's main process alone (one thread: the part no core count shortens) and
the hosts (each guest's own /proc, benchmarks/guest_cpu.py). Per host: the goals are control
<= 3 core-s cold and <= 1 re-deploying, host <= 10 core-s cold whatever N. Then a stated
Amdahl-style model, fitted on the 1-host point and checked against the others, predicts the
wall time of N hosts here and on a C-core control node whose hosts have their own cores.
--profile adds, for the smallest and largest N, the control side's CPU per task (the
ark_task_cpu callback, plugins/callback) and ark-lab-1's CPU per unit.
Disk: the base image, one host's overlay after boot and after deploy, the wheelhouse.
--image also times a cold base-image build (debootstrap), once.
Prints medians over the runs. Destroys the current lab.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import baseline_tree  # noqa: E402
import guest_cpu  # noqa: E402

from ark_ops.deploy import playbook as ansible_run  # noqa: E402
from ark_ops.deploy import run as deploy_mod  # noqa: E402
from ark_ops.lab import image, lab  # noqa: E402
from ark_ops.lab.config import LabHost, LabPaths  # noqa: E402
from ark_ops.lab.ssh import ssh_argv  # noqa: E402


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


def guest_usec(host: str) -> dict[str, int]:
    """A guest's CPU so far, per unit and in all, from its own /proc (guest_cpu.py)."""
    argv = ssh_argv(LabPaths.default(), LabHost.parse(host), guest_cpu.PROBE)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    return guest_cpu.parse(out)


def hosts_core_seconds(hosts: int) -> float:
    """The busy core-seconds every lab guest (ark-lab-1..N) has used since it booted."""
    names = [f"ark-lab-{i}" for i in range(1, hosts + 1)]
    with ThreadPoolExecutor(min(8, hosts)) as pool:
        return sum(usage["total"] for usage in pool.map(guest_usec, names)) / 1e6


class MainProcessCPU:
    """Polls the CPU of ansible-playbook's main process itself (not its workers) while a
    deploy runs; the last sample before it exits (up to one interval short)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.seconds = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children():
                with contextlib.suppress(psutil.Error):
                    if any("ansible-playbook" in a for a in child.cmdline()[:2]):
                        t = child.cpu_times()
                        self.seconds = t.user + t.system
            self._stop.wait(self.interval)

    def __enter__(self) -> MainProcessCPU:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measured_deploy(inventory: Path, hosts: int, profile: bool = False) -> dict[str, Any]:
    """One deploy by this tree onto lab hosts 1..N: wall seconds, busy core-seconds of the
    control side, of Ansible's main process, of the hosts and of the whole machine; with
    `profile`, also the control side's CPU per task (plugins/callback/ark_task_cpu.py) and
    ark-lab-1's CPU per unit."""
    machine, control, guests = busy_core_seconds(), children_core_seconds(), \
        hosts_core_seconds(hosts)
    units = guest_usec("ark-lab-1") if profile else {}
    with tempfile.NamedTemporaryFile(suffix=".json") as tasks_out, MainProcessCPU() as main_cpu:
        env = {"ANSIBLE_CALLBACKS_ENABLED": "ark_task_cpu",
               "ARK_TASK_CPU_OUT": tasks_out.name} if profile else {}
        with mock.patch.dict(os.environ, env):
            seconds, changed = timed_deploy(None, inventory)
        tasks = json.loads(Path(tasks_out.name).read_text() or "[]") if profile else []
    after = guest_usec("ark-lab-1") if profile else {}
    return {"wall": seconds, "control": children_core_seconds() - control,
            "main": main_cpu.seconds, "hosts": hosts_core_seconds(hosts) - guests,
            "machine": busy_core_seconds() - machine, "changed": float(sum(changed.values())),
            "tasks": tasks,
            "units": {u: (used - units.get(u, 0)) / 1e6 for u, used in after.items()
                      if u != "total"}}


def profile_report(n: int, kind: str, run: dict[str, Any], top: int = 12) -> None:
    tasks = sorted(run["tasks"], key=lambda t: -t["cpu"])[:top]
    total = sum(t["cpu"] for t in run["tasks"])
    print(f"\n{kind}, {n} host(s): control-side CPU per task, top {len(tasks)} of "
          f"{len(run['tasks'])} ({total:.1f} core-s in tasks)")
    for t in tasks:
        print(f"  {t['cpu']:>6.2f} core-s {t['wall']:>6.1f}s  {t['task'][:90]}")
    units = run["units"]
    print(f"{kind}, ark-lab-1: CPU per unit or scope ({sum(units.values()):.1f} core-s; "
          f"ssh.service holds what Ansible ran there, reaped when its session ended)")
    for unit, used in sorted(units.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {used:>6.2f} core-s  {unit}")


def scaling_run(paths: LabPaths, points: list[int], profile: bool
                ) -> dict[int, dict[str, dict[str, Any]]]:
    inv = paths.inventory / "hosts.yml"
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for n in points:
        lab.down(log=quiet)
        lab.up(hosts=n, log=quiet)
        cold = measured_deploy(inv, n, profile)
        again = measured_deploy(inv, n, profile)
        warn_if_changed(f"{n}-host re-deploy", {"all": int(again["changed"])})
        out[n] = {"cold": cold, "re-deploy": again}
        print(f"scaling {n} host(s): " + ", ".join(
            f"{kind} " + " ".join(f"{k} {v:.1f}" for k, v in r.items()
                                  if isinstance(v, float)) for kind, r in out[n].items()),
              file=sys.stderr)
    lab.down(log=quiet)
    return out


def amdahl_report(points: dict[int, dict[str, dict[str, Any]]], forks: int) -> None:
    """Per-host core-seconds against the goals, then the model (stated in the output)."""
    cores = psutil.cpu_count() or 1
    print(f"\nbusy core-seconds per host (this machine: {cores} cores shared by Ansible and "
          f"every lab host)")
    print(f"{'hosts':>5} {'deploy':<10}{'wall':>8}{'control':>9}{'main':>7}{'hosts':>8}"
          f"{'control/host':>14}{'host/host':>11}")
    for n, runs in points.items():
        for kind, r in runs.items():
            print(f"{n:>5} {kind:<10}{r['wall']:>7.1f}s{r['control']:>9.1f}{r['main']:>7.1f}"
                  f"{r['hosts']:>8.1f}{r['control'] / n:>14.2f}{r['hosts'] / n:>11.2f}")
    worst = {k: max(r[k]["control"] / n for n, r in points.items()) for k in ("cold",
                                                                              "re-deploy")}
    host_cold = max(r["cold"]["hosts"] / n for n, r in points.items())
    print(f"goals: control <= 3 core-s per host cold (worst {worst['cold']:.2f}: "
          f"{'met' if worst['cold'] <= 3 else 'not met'}), <= 1 re-deploying (worst "
          f"{worst['re-deploy']:.2f}: {'met' if worst['re-deploy'] <= 1 else 'not met'}); host "
          f"<= 10 core-s cold whatever N (worst {host_cold:.2f}: "
          f"{'met' if host_cold <= 10 else 'not met'})")
    if 1 not in points:
        return
    ns = sorted(points)
    for kind in ("cold", "re-deploy"):
        one = points[1][kind]
        # Least squares over the points: control = a0 + a1*N, main = m0 + m1*N, hosts = h*N.
        a0, a1 = linear_fit(ns, [points[n][kind]["control"] for n in ns])
        m0, m1 = linear_fit(ns, [points[n][kind]["main"] for n in ns])
        h1 = one["hosts"]
        serial = one["wall"] - (one["control"] + h1) / cores
        print(f"\nmodel, {kind} (Amdahl-style): W(N) = S + work/cores, S = one host's wall "
              f"time its CPU does not explain = {one['wall']:.1f} - ({one['control']:.1f} + "
              f"{h1:.1f}) / {cores} = {serial:.1f} s (waits, round trips, task order); control "
              f"work {a0:.1f} + {a1:.2f}*N core-s, Ansible's main process {m0:.1f} + "
              f"{m1:.2f}*N (one thread), hosts {h1:.1f}*N")
        for n in ns:
            here = serial + (a0 + a1 * n + h1 * n) / cores
            got = points[n][kind]["wall"]
            print(f"  here, {n} host(s): predicted {here:.1f} s, measured {got:.1f} s "
                  f"({(here - got) / got * 100:+.0f} %)")
        print(f"  on a C-core control node, hosts on their own {cores} cores: W = S + "
              f"{h1:.1f}/{cores} + max(main, control/min(C, forks={forks}))")
        for c in (8, 16):
            for n in (8, 50, 200):
                par = min(c, forks)
                w = serial + h1 / cores + max(m0 + m1 * n, (a0 + a1 * n) / par)
                print(f"    C={c:>2}, N={n:>3}: {w:.0f} s")


def linear_fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """(intercept, slope) by least squares; a single point gives (0, y/x)."""
    if len(xs) < 2:
        return 0.0, ys[0] / xs[0]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
             / sum((x - mx) ** 2 for x in xs))
    return my - slope * mx, slope


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
    parser.add_argument("--scaling", metavar="N,N,...",
                        help="then cold deploy and re-deploy onto each host count, with busy "
                             "core-seconds per host and the Amdahl-style prediction")
    parser.add_argument("--profile", action="store_true",
                        help="with --scaling, also the control side's CPU per task and "
                             "ark-lab-1's CPU per unit")
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
    scaling = scaling_run(paths, [int(n) for n in args.scaling.split(",")], args.profile) \
        if args.scaling else {}
    if not (args.fleet and args.keep_fleet_up):
        lab.down(log=quiet)
    disk["base image (shared, cached)"] = du(image.image_path(paths.cache))
    disk["wheelhouse"] = du(deploy_mod.WHEELHOUSE)
    report(rows, disk, paths, args.fleet)
    if scaling:
        amdahl_report(scaling, ansible_forks())
        if args.profile:
            for n in (min(scaling), max(scaling)):
                for kind, run in scaling[n].items():
                    profile_report(n, kind, run)
    return 0


def ansible_forks() -> int:
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "ansible.cfg")
    return cfg.getint("defaults", "forks", fallback=5)


if __name__ == "__main__":
    sys.exit(main())
