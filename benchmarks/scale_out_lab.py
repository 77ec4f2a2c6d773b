"""Scale-out on the lab (issue #12): Joey's throughput with 1 shard vs 2 shards on two agent
hosts, against the one Redis of a split-topology lab.

    flock /run/ark-lab.lock .venv/bin/python benchmarks/scale_out_lab.py [--rounds 1]
        [--window 20] [--symbols 32]

Three lab hosts (split topology: ark-lab-1 Redis + monitoring, ark-lab-2 the API and
agents, ark-lab-3 agents). The role deals the one pipeline's agents out over ark-lab-2 and
ark-lab-3 (ark_ops/placement.py). Each round deploys twice, alternating:
* one host: every agent on ark-lab-2, ark-lab-3 runs none (ark_runtime_agents set by hand
  in host_vars);
* two hosts, 2 shards: the default placement, Kyle, Joey's shard 1 (ark-agent@joey-1) and
  HRM on ark-lab-2, shard 0 and Kenny on ark-lab-3.
Kyle replays a synthetic feed unpaced (a new seed per deploy, so it starts over). Once the
Joey groups have a backlog, the bars every Joey group acked (XINFO GROUPS entries-read minus
pending) are read twice, --window seconds apart, on ark-lab-2 with the deployed runtime and
its env file (no secret on a command line); the backlog must still be there at the end, or
the figure is Kyle's, not Joey's, and is marked so. The lab is taken down at the end.
The lab hosts are containers on this machine's cores: see the printed CPU count.

Efficiency (issue #23 §2): over the same window, the busy core-seconds of every pipeline
unit (`ark-agent@*`) and of Redis on every host, read from each host's /proc (the kernel's
own accounting, benchmarks/guest_cpu.py) before and after, and bars per busy core-second.
That figure does not depend on how many cores the machine has, so it is the one compared
(goal: 2 shards on 2 hosts >= 0.9x 1 shard on 1 host); the wall-time ratio a fleet would
see is then the printed prediction: efficiency ratio x the hosts' cores in use.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import guest_cpu  # noqa: E402

from ark_ops.deploy import run as deploy_mod  # noqa: E402
from ark_ops.lab import lab  # noqa: E402
from ark_ops.lab.config import LabHost, LabPaths  # noqa: E402
from ark_ops.lab.ssh import ssh_argv  # noqa: E402
from ark_ops.placement import AGENTS  # noqa: E402

MAIN, SECOND = "ark-lab-2", "ark-lab-3"

# Run on MAIN by the deployed runtime: the Joey groups' acked totals and backlog.
PROBE = """set -a; . /etc/ark/env/infrastructure.env; set +a
/opt/ark/venv/bin/python - <<'PY'
import json
from ark_runtime.bus.shards import shard_name
from ark_runtime.bus.streams import connect, inbox
r = connect()
out = {}
for k in range(64):
    s = inbox(shard_name(k))
    if not r.exists(s):
        break
    for g in r.xinfo_groups(s):
        if g["name"] == "joey":
            out[s] = [int(g.get("entries-read") or 0) - int(g["pending"]),
                      int(g.get("lag") or 0)]
out["paused"] = sorted(r.hkeys("ark:pause"))
print(json.dumps(out))
PY"""


HOSTS = ("ark-lab-1", MAIN, SECOND)


def cpu_sample() -> dict[str, int]:
    """{"host unit": usec} of the pipeline's units and Redis over the lab's hosts, read at
    (nearly) one moment from each host's /proc (benchmarks/guest_cpu.py says why not from
    cgroups)."""
    with concurrent.futures.ThreadPoolExecutor(len(HOSTS)) as pool:
        outs = dict(zip(HOSTS, pool.map(lambda h: on(h, guest_cpu.PROBE), HOSTS), strict=True))
    return {f"{host} {unit}": usec for host, out in outs.items()
            for unit, usec in guest_cpu.parse(out).items()
            if unit.startswith(("ark-agent@", "redis"))}


def busy_seconds(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Busy core-seconds per "host unit" between two samples; a unit that restarted in
    between counts from 0."""
    out: dict[str, float] = {}
    for key, usec in after.items():
        start = before.get(key, 0)
        out[key] = (usec - start if usec >= start else usec) / 1e6
    return out


def role(key: str) -> str:
    """"ark-lab-2 ark-agent@joey-1.service" -> "joey"; any Redis unit -> "redis"."""
    unit = key.split(" ", 1)[1]
    if unit.startswith("redis"):
        return "redis"
    return unit.removeprefix("ark-agent@").removesuffix(".service").split("-")[0]


def predicted_bars_s(row: dict[str, Any], cores_per_host: int | None) -> float:
    """The bars/s this placement would reach with each host on its own cores (model, stated
    in the report): each agent and Redis is one single-threaded process, so none goes past
    one busy core, and a host's units together not past its cores. Throughput scales until
    the first of those fills: measured bars/s / the largest such fraction."""
    secs, units = row["cpu_secs"], row["units"]
    fractions = [used / secs for used in units.values()]  # one process: <= 1 core
    if cores_per_host:
        per_host: dict[str, float] = {}
        for key, used in units.items():
            host = key.split(" ", 1)[0]
            per_host[host] = per_host.get(host, 0.0) + used / secs / cores_per_host
        fractions += per_host.values()
    top = max(fractions, default=0.0)
    if not top:
        raise RuntimeError("no pipeline unit's CPU was read on the hosts")
    return row["bars_s"] / top


# Between deploys, the previous run goes: its Joey backlog (it would be worked off by the
# next run's Joeys, or hold Kyle when the shard count drops) and its idempotency marks (a
# saturated run writes ~10 MB/s of them; kept 7 days, they fill any maxmemory). With the
# agents stopped, all of Redis: each run's feed has its own seed and symbols, so nothing is
# replayed into HRM's store.
STOP_AGENTS = "systemctl stop 'ark-agent@*.service'"
FLUSH = PROBE.split("from ark_runtime")[0] + """from ark_runtime.bus.streams import connect
connect().flushall()
PY"""


def reset() -> None:
    for host in (MAIN, SECOND):
        on(host, STOP_AGENTS)
    on(MAIN, FLUSH)


def balanced_symbols(prefix: str, n: int) -> list[str]:
    """n symbols, half on each of 2 shards: the 2-shard figure is not bounded by a skew."""
    from ark_runtime.bus.shards import shard_of

    picked: dict[int, list[str]] = {0: [], 1: []}
    i = 0
    while min(len(v) for v in picked.values()) < n // 2:
        symbol = f"{prefix}{i:03d}"
        if len(picked[shard_of(symbol, 2)]) < n // 2:
            picked[shard_of(symbol, 2)].append(symbol)
        i += 1
    return picked[0] + picked[1]


def on(host: str, command: str) -> str:
    proc = subprocess.run(ssh_argv(LabPaths.default(), LabHost.parse(host), command),
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{host}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def probe() -> dict[str, list[int]]:
    found = json.loads(on(MAIN, PROBE).strip().splitlines()[-1])
    if found.pop("paused"):
        raise RuntimeError("the pipeline is paused by a critical error: not a throughput "
                           "figure (see ark errors status on the lab)")
    return found


def configure(shards: int, seed: int, symbols: int) -> None:
    inv = LabPaths.default().inventory
    for d in ("group_vars", "host_vars"):
        (inv / d).mkdir(exist_ok=True)
    # New symbols per deploy: a symbol's old window would make the new feed's bars stale.
    feed = {"ARK_FEED": "synthetic", "ARK_FEED_BARS": "50000", "ARK_FEED_RATE": "0",
            "ARK_FEED_SEED": str(seed),
            "ARK_FEED_SYMBOLS": ",".join(balanced_symbols(f"S{chr(65 + seed % 26)}", symbols))}
    # Room for a saturated minute of marks and backlog (the default 256mb fills in ~25 s).
    (inv / "group_vars" / "all.yml").write_text(yaml.safe_dump(
        {"ark_runtime_joey_shards": shards, "ark_runtime_env": feed,
         "ark_redis_maxmemory": "2gb"}))
    # One host: the whole pipeline on MAIN by hand. Two: {} leaves it to the role's placement.
    alone = shards == 1
    (inv / "host_vars" / f"{MAIN}.yml").write_text(yaml.safe_dump(
        {"ark_runtime_agents": list(AGENTS), "ark_runtime_joey_shards_here": [0]}
        if alone else {}))
    (inv / "host_vars" / f"{SECOND}.yml").write_text(yaml.safe_dump(
        {"ark_runtime_agents": [], "ark_runtime_joey_shards_here": []} if alone else {}))


def timed(fn: Any) -> tuple[Any, float]:
    """fn()'s result and the moment halfway through the call."""
    started = time.monotonic()
    result = fn()
    return result, (started + time.monotonic()) / 2


def snapshot() -> tuple[tuple[dict[str, list[int]], float], tuple[dict[str, int], float]]:
    """The Joey groups' counts and every unit's CPU, each with the moment it was read. They
    are read at the same time, and each figure is a rate over its own window: under a
    saturated host a probe can take many seconds."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        counts, cpu = pool.submit(timed, probe), pool.submit(timed, cpu_sample)
        return counts.result(), cpu.result()


def measure(window: float) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while True:  # warmed up: every shard has acked bars and still has a backlog
        first = probe()
        if first and all(done > 2000 and lag > 0 for done, lag in first.values()):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no Joey backlog after 300 s: {first}")
        time.sleep(2)
    (first, t0), (cpu0, u0) = snapshot()
    time.sleep(window)
    (last, t1), (cpu1, u1) = snapshot()
    units = busy_seconds(cpu0, cpu1)
    if not any(role(k) == "joey" for k in units):
        raise RuntimeError(f"no Joey unit's CPU was read on the hosts: {units}")
    acked = sum(last[s][0] - first[s][0] for s in first)
    bars_s, cores = acked / (t1 - t0), sum(units.values()) / (u1 - u0)
    return {"bars_s": bars_s, "saturated": all(lag > 0 for _, lag in last.values()),
            "streams": len(first), "secs": t1 - t0, "cpu_secs": u1 - u0, "units": units,
            "cores": cores, "bars_per_core_s": bars_s / cores if cores else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--window", type=float, default=20.0, help="seconds between the samples")
    ap.add_argument("--symbols", type=int, default=32)
    args = ap.parse_args()
    results: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    inv = LabPaths.default().inventory
    lab.up(hosts=3, topology="split", log=lambda *_: None)
    try:
        seed = 100
        for i in range(args.rounds):
            for shards in (1, 2):
                seed += 1
                if seed > 101:
                    reset()
                configure(shards, seed, args.symbols)
                log(f"round {i + 1}: deploying {shards} shard(s)")
                result = deploy_mod.deploy(echo=False, log=lambda *_: None)
                if any(c["failed"] or c["unreachable"] for c in result.recap.values()):
                    raise RuntimeError(f"deploy failed: {result.recap}")
                results[shards].append(measure(args.window))
                log(f"  {results[shards][-1]}")
    finally:
        for d in ("group_vars/all.yml", f"host_vars/{MAIN}.yml", f"host_vars/{SECOND}.yml"):
            if (inv / d).exists():
                (inv / d).write_text("{}\n")  # never deleted: Ansible caches vars
        lab.down(log=lambda *_: None)
    report(results, args)
    return 0


def report(results: dict[int, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    med = statistics.median
    print(f"ARK scale-out on the lab: Joey bars/s, one Redis (ark-lab-1); {os.cpu_count()} "
          f"CPUs shared by every lab host; window {args.window:g} s; medians of "
          f"{args.rounds}")
    for shards, rows in results.items():
        if not rows:
            continue
        where = MAIN if shards == 1 else f"{MAIN} + {SECOND}"
        runs = ", ".join(f"{r['bars_s']:.0f}" for r in rows)
        print(f"{shards} shard(s) on {where}: {med(r['bars_s'] for r in rows):.0f} bars/s "
              f"(runs {runs}; saturated {all(r['saturated'] for r in rows)})")
        effs = ", ".join(f"{r['bars_per_core_s']:.0f}" for r in rows)
        print(f"  {med(r['bars_per_core_s'] for r in rows):.0f} bars per busy core-second "
              f"(runs {effs}); {med(r['cores'] for r in rows):.2f} cores busy in the "
              f"pipeline's units and Redis")
        roles = sorted({role(k) for r in rows for k in r["units"]})
        per_bar = {name: med(sum(v for k, v in r["units"].items() if role(k) == name)
                             / r["cpu_secs"] / r["bars_s"] * 1e6 for r in rows)
                    for name in roles}
        print("  CPU per bar: " + ", ".join(f"{n} {us:.1f} us" for n, us in per_bar.items())
              + f" (total {sum(per_bar.values()):.1f} us)")
    if results[1] and results[2]:
        wall = med(r["bars_s"] for r in results[2]) / med(r["bars_s"] for r in results[1])
        eff = (med(r["bars_per_core_s"] for r in results[2])
               / med(r["bars_per_core_s"] for r in results[1]))
        print(f"ratio 2 hosts / 1 host: {wall:.2f}x bars/s here (shared cores); "
              f"{eff:.2f}x bars per busy core-second (goal >= 0.9x: "
              f"{'met' if eff >= 0.9 else 'not met'})")
        print("prediction, each host on its own cores (model: every agent and Redis is one "
              "single-threaded process, so none passes one core, nor a host's units its "
              "cores; bars/s scale until the first fills):")
        for cores in (2, 4, None):
            one = med(predicted_bars_s(r, cores) for r in results[1])
            two = med(predicted_bars_s(r, cores) for r in results[2])
            label = f"{cores} cores per host" if cores else "cores unlimited"
            print(f"  {label}: 1 host {one:.0f} bars/s, 2 hosts {two:.0f}: {two / one:.2f}x")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
