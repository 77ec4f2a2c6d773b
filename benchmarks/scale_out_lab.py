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
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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


def measure(window: float) -> dict[str, float]:
    deadline = time.monotonic() + 300
    while True:  # warmed up: every shard has acked bars and still has a backlog
        first = probe()
        if first and all(done > 2000 and lag > 0 for done, lag in first.values()):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no Joey backlog after 300 s: {first}")
        time.sleep(2)
    t0 = time.monotonic()
    time.sleep(window)
    last = probe()
    secs = time.monotonic() - t0
    acked = sum(last[s][0] - first[s][0] for s in first)
    return {"bars_s": acked / secs, "saturated": float(all(lag > 0 for _, lag in
                                                           last.values())),
            "streams": float(len(first))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--window", type=float, default=20.0, help="seconds between the samples")
    ap.add_argument("--symbols", type=int, default=32)
    args = ap.parse_args()
    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
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
    print(f"ARK scale-out on the lab: Joey bars/s, one Redis (ark-lab-1); {os.cpu_count()} "
          f"CPUs shared by every lab host; window {args.window:g} s; medians of "
          f"{args.rounds}")
    for shards, rows in results.items():
        if rows:
            where = MAIN if shards == 1 else f"{MAIN} + {SECOND}"
            runs = ", ".join(f"{r['bars_s']:.0f}" for r in rows)
            print(f"{shards} shard(s) on {where}: "
                  f"{statistics.median(r['bars_s'] for r in rows):.0f} bars/s "
                  f"(runs {runs}; saturated {all(r['saturated'] for r in rows)})")
    if results[1] and results[2]:
        ratio = (statistics.median(r["bars_s"] for r in results[2])
                 / statistics.median(r["bars_s"] for r in results[1]))
        print(f"ratio 2 hosts / 1 host: {ratio:.2f}x")
    return 0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
