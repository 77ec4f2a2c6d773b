"""API under the console's signed-in read mix (issue #23 §5), beside the `/health` baseline in
the same run: one `ark api` worker, wrk with ark_ops/load/mix.lua, medians of --runs.

    .venv/bin/python benchmarks/api_mix.py [--runs 3] [--duration 10] [--connections 10,50]
        [--rates 500,2000] [--chatter 8] [--baseline-ref HEAD] [--json reports/api_mix.json]

A real redis-server and a real `ark api` (python -m ark_runtime.cli api, as ark-api.service
runs it, plain HTTP on loopback) with an operators.json, and agent logs of --log-lines lines
per agent (JSON records as logjson writes them, with correlation ids) for the log viewer and
trace routes. The API is pinned to CPU 0; wrk (one thread) and Redis to CPU 1. Secrets (the
Redis and operator passwords, the session) go through 0600 files and the environment only.

For each run and each connection count: `/health` alone (the baseline), then the mix unpaced
(what one worker carries), then the mix paced at each --rates (mix.lua's delay(): each
request takes the next slot of a wall-clock schedule) for p99 at a stated load. Each line gives
RPS, p50/p99, errors, wrk's CPU (cores busy of its 1 thread) and the API's (cores busy of
its 1 worker, and requests per API CPU second: the efficiency that does not depend on how
much of CPU 0 other jobs took). The machine's load average is printed with every line.
With --baseline-ref a second `ark api` runs the whole ark_runtime package as it was at that
ref (git archive, first on its PYTHONPATH) on another port: every measurement is taken of
both, one after the other, so both see the same machine load ("baseline: ..." lines).
Goal (issue #23): the mix >= 2,000 RPS with p99 <= 50 ms on one worker; `/health` stays
where benchmarks/api_speed.py put it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ark_ops.load import mix, wrk  # noqa: E402

USER = "loadtest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_logs(directory: Path, lines: int) -> None:
    """Agent logs as logjson writes them: one flow's records share a correlation id."""
    from ark_runtime.api.logs import SOURCES

    directory.mkdir(parents=True, exist_ok=True)
    start = datetime.now(UTC) - timedelta(hours=1)
    levels = ["info"] * 17 + ["warning", "error", "debug"]
    flows = [str(uuid.uuid4()) for _ in range(max(1, lines // 4))]
    for k, agent in enumerate(SOURCES):
        with (directory / f"{agent}.log").open("w") as f:
            for i in range(lines):
                ts = (start + timedelta(milliseconds=250 * i + k)).isoformat(
                    timespec="microseconds")
                f.write(json.dumps({
                    "ts": ts, "level": levels[i % len(levels)], "agent": agent,
                    "host": "bench", "pid": 1000 + k, "logger": f"ark.{agent}",
                    "msg": f"{agent} handled bar {i} of EURUSD", "event": "handled",
                    "correlation_id": flows[i % len(flows)],
                    "message_id": str(uuid.UUID(int=i * 16 + k))}) + "\n")


def publish(redis_port: int, password: str, rate: int, stop: threading.Event) -> None:
    """Bus traffic for the chatter feed: `rate` messages a second into Joey's inbox, as
    benchmarks/console_soak.py publishes them."""
    import redis

    from ark_runtime.bus.streams import inbox

    r = redis.Redis(port=redis_port, password=password)
    envelope = json.dumps({"from_agent": "kyle", "to_agent": "joey", "type": "market.bar",
                           "payload": {"symbol": "EURUSD", "close": 1.0842}})
    while not stop.wait(0.1):
        pipe = r.pipeline(transaction=False)
        for _ in range(max(1, rate // 10)):
            pipe.xadd(inbox("joey"), {"type": "market.bar", "envelope": envelope},
                      maxlen=20_000, approximate=True)
        pipe.execute()
    r.close()


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ark api exited {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} never answered /health")


HEALTH = [mix.Request("health", 1, "/health", "/health")]


def one(url: str, session, doc, api_pid: int, *, seconds: int, connections: int, rate: int,
        reqs: list | None, chatter: int, workdir: Path) -> dict:
    return wrk.measure(url, session, doc, seconds=seconds, connections=connections, rate=rate,
                       api_pid=api_pid, chatter=chatter, wrk_cpu="1", workdir=workdir,
                       reqs=reqs)


def line(label: str, r: dict) -> str:
    api = r["api"] or {}
    return (f"{label:28s} {r['rps']:8.0f} RPS  p50 {r['p50_ms']:6.2f} ms  p99 "
            f"{r['p99_ms']:7.2f} ms  errors {r['errors']:4d}  "
            f"wrk {r['generator']['cores_busy']:.2f}"
            f"/1 core  API {api.get('cores_busy', 0):.2f}/1 core  "
            f"{api.get('requests_per_cpu_s')} req/API-CPU-s  load {os.getloadavg()[0]:.1f}")


def median_of(results: list[dict]) -> dict:
    keys = ("rps", "p50_ms", "p99_ms", "errors")
    out = {k: round(statistics.median(r[k] for r in results), 2) for k in keys}
    out["generator_cores_busy"] = round(statistics.median(
        r["generator"]["cores_busy"] for r in results), 2)
    out["api_cores_busy"] = round(statistics.median(r["api"]["cores_busy"] for r in results), 2)
    out["requests_per_api_cpu_s"] = round(statistics.median(
        r["api"]["requests_per_cpu_s"] or 0 for r in results))
    return out


def export(ref: str, into: Path) -> None:
    """ark_runtime as it was at `ref`, under `into` (as benchmarks/console_soak.py)."""
    data = subprocess.run(["git", "-C", str(REPO), "archive", ref, "ark_runtime"],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", default="10,50")
    p.add_argument("--rates", default="2000", help="paced runs' offered RPS ('' for none)")
    p.add_argument("--chatter", type=int, default=8,
                   help="WebSocket chatter listeners held open during the mix runs")
    p.add_argument("--chatter-rate", type=int, default=50,
                   help="bus messages per second published for the chatter listeners to get")
    p.add_argument("--log-lines", type=int, default=2000,
                   help="lines per agent log (the trace route reads them all)")
    p.add_argument("--routes-alone", action="store_true",
                   help="also measure each mix route alone (its cost per API CPU second)")
    p.add_argument("--drop", default="",
                   help="mix routes to leave out, by name, comma-separated (to see what one "
                        "route costs the rest, e.g. --drop trace)")
    p.add_argument("--baseline-ref", default="",
                   help="git ref whose ark_runtime a second API runs, measured beside this "
                        "tree's in the same run (e.g. HEAD)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    if not shutil.which("wrk"):
        print("api_mix: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 69
    from ark_runtime.api.passwords import hash_password

    conns = [int(c) for c in args.connections.split(",") if c]
    rates = [int(r) for r in args.rates.split(",") if r]
    workdir = Path(tempfile.mkdtemp(prefix="ark-api-mix-"))
    os.chmod(workdir, 0o700)
    redis_password, password = secrets.token_hex(16), secrets.token_urlsafe(18)
    redis_port = free_port()
    conf = mix.write_private(workdir, "redis.conf", (
        f"port {redis_port}\nbind 127.0.0.1\nrequirepass {redis_password}\nsave \"\"\n"
        f"appendonly no\ndir {workdir}\n"))
    (workdir / "etc" / "api").mkdir(parents=True)
    mix.write_private(workdir / "etc" / "api", "operators.json", json.dumps(
        [{"name": USER, "role": "admin", "password_hash": hash_password(password, n=2**12)}]))
    write_logs(workdir / "log", args.log_lines)
    procs: list[subprocess.Popen] = []
    stop_publishing = threading.Event()
    results: dict[str, list[dict]] = {}
    try:
        procs.append(subprocess.Popen(["taskset", "-c", "1", shutil.which("redis-server")
                                       or "/usr/bin/redis-server", str(conf)],
                                      stdout=subprocess.DEVNULL))
        trees = {"current": REPO}
        if args.baseline_ref:
            export(args.baseline_ref, workdir / "baseline")
            trees = {"baseline": workdir / "baseline", **trees}
        apis: dict[str, tuple] = {}  # variant: (url, session, doc, pid)
        for variant, tree in trees.items():
            port = free_port()
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("ARK_", "NOTIFY_"))}
            env.update({"PYTHONPATH": str(tree), "ARK_API_HOST": "127.0.0.1",
                        "ARK_API_PORT": str(port), "ARK_API_SECRET": secrets.token_urlsafe(40),
                        "ARK_REDIS_PORT": str(redis_port), "ARK_REDIS_PASSWORD": redis_password,
                        "ARK_AUDIT_SINK": "stderr", "ARK_CONFIG_DIR": str(workdir / "etc"),
                        "ARK_STATE_DIR": str(workdir / "state"),
                        "ARK_LOG_DIR": str(workdir / "log"),
                        "ARK_RUN_DIR": str(workdir / f"run-{variant}")})
            api_log = (workdir / f"api-{variant}.stderr").open("wb")
            api = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m",
                                    "ark_runtime.cli", "api"], env=env, cwd=workdir,
                                   stdout=subprocess.DEVNULL, stderr=api_log)
            procs.append(api)
            url = f"http://127.0.0.1:{port}"
            wait_up(url, api)
            apis[variant] = (url, *wrk.sign_in(url, USER, password), api.pid)
        url, session, doc, api_pid = apis["current"]
        if args.chatter and args.chatter_rate:
            threading.Thread(target=publish, daemon=True,
                             args=(redis_port, redis_password, args.chatter_rate,
                                   stop_publishing)).start()
        print(f"mix ({len(mix.MIX)} routes from {url}/openapi.json): "
              + ", ".join(f"{e.name} {e.weight}" for e in mix.MIX), flush=True)
        print(f"started {datetime.now(UTC).isoformat(timespec='seconds')}, "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()}", flush=True)
        for v_url, v_session, v_doc, v_pid in apis.values():
            one(v_url, v_session, v_doc, v_pid, seconds=2, connections=conns[0], rate=0,
                reqs=None, chatter=0, workdir=workdir)  # warm-up
        drop = {d.strip() for d in args.drop.split(",") if d.strip()}
        unknown = drop - {e.name for e in mix.MIX}
        if unknown:
            raise SystemExit(f"--drop: no mix route named {', '.join(sorted(unknown))}")
        the_mix = [r for r in mix.requests(doc, session) if r.name not in drop] \
            if drop else None
        name = "mix" + (f" without {', '.join(sorted(drop))}" if drop else "")
        variants: list[tuple[str, int, int, list | None]] = []
        if args.routes_alone:
            variants += [(f"alone: {r.name}", conns[0], 0, [r])
                         for r in mix.requests(doc, session)]
        for c in conns:
            variants += [(f"health c={c}", c, 0, HEALTH), (f"{name} c={c}", c, 0, the_mix)]
            variants += [(f"{name} c={c} paced {r}", c, r, the_mix) for r in rates]
        for i in range(args.runs):
            for label, c, rate, reqs in variants:
                for variant, (v_url, v_session, v_doc, v_pid) in apis.items():
                    # The same requests against each API: its own session in the cookie.
                    v_reqs = reqs if reqs is HEALTH or variant == "current" else (
                        [r for r in mix.requests(v_doc, v_session)
                         if r.name in {q.name for q in reqs}] if reqs is not None else
                        ([r for r in mix.requests(v_doc, v_session) if r.name not in drop]
                         if drop else None))
                    r = one(v_url, v_session, v_doc, v_pid, seconds=args.duration,
                            connections=c, rate=rate, reqs=v_reqs,
                            chatter=0 if reqs is HEALTH or label.startswith("alone")
                            else args.chatter, workdir=workdir)
                    key = label if variant == "current" else f"baseline: {label}"
                    results.setdefault(key, []).append(r)
                    print(f"run {i + 1}/{args.runs} {line(key, r)}", flush=True)
        for v_url, v_session, _doc, _pid in apis.values():
            wrk.sign_out(v_url, v_session)
    finally:
        stop_publishing.set()
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {label: median_of(rs) for label, rs in results.items()}
    report = {"runs": args.runs, "duration_s": args.duration, "connections": conns,
              "rates": rates, "dropped": sorted(drop), "chatter_listeners": args.chatter,
              "chatter_rate": args.chatter_rate, "log_lines": args.log_lines,
              "baseline_ref": args.baseline_ref or None,
              "cpus": os.cpu_count(), "load_average_end": os.getloadavg(),
              "mix": [{"name": e.name, "route": e.path, "weight": e.weight} for e in mix.MIX],
              "median": summary,
              "chatter": [r.get("chatter") for rs in results.values() for r in rs
                          if r.get("chatter")][:1],
              "goal": {"mix_rps": 2000, "p99_ms": 50}}
    print("\nmedians of", args.runs, "runs:")
    for label, m in summary.items():
        print(f"  {label:38s} {m['rps']:8.0f} RPS  p50 {m['p50_ms']:6.2f}  "
              f"p99 {m['p99_ms']:7.2f} ms"
              f"  errors {m['errors']:.0f}  wrk {m['generator_cores_busy']:.2f}  API "
              f"{m['api_cores_busy']:.2f} cores  {m['requests_per_api_cpu_s']} req/API-CPU-s")
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
