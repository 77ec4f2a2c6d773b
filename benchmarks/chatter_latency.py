"""UI_03 chatter feed latency: publish (XADD) -> WebSocket client, p50/p99.

    .venv/bin/python benchmarks/chatter_latency.py [--rate 500] [--clients 10] [--duration 10]
                                                  [--runs 3] [--baseline-ref 5eeee46]

A real redis-server and the real API (uvicorn, uvloop + httptools, pinned to CPU 0) with one
operator account; this process signs in, opens --clients WebSockets on /ws/chatter, and
publishes real `market.bar` envelopes into Joey's inbox at --rate messages/s. Latency is the
wall time from just before each XADD to its arrival at each client (same clock, one host).
Goal (issue 10): p99 <= 20 ms at 500 msg/s with 10 clients (the seed asks < 200 ms).

Side by side in one run: the baseline is the chatter hub as it was at --baseline-ref (its
`ark_runtime/api/chatter.py` loaded from git into the server in place of today's), the
current one is the working tree's. Runs alternate baseline/current so both see the same
machine load; the report gives each one's median p50/p99 over --runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

import psutil  # noqa: E402
from api_speed import free_port, wait_up  # noqa: E402

PASSWORD = "bench-" + secrets.token_hex(8)


def use_chatter_from(ref: str) -> None:
    """Replace ark_runtime.api.chatter with the file as it was at `ref` (before app imports)."""
    import types

    source = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:ark_runtime/api/chatter.py"],
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("ark_runtime.api.chatter")
    module.__file__ = f"<chatter.py at {ref}>"
    sys.modules[module.__name__] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102


def serve(port: int, redis_port: int, ref: str | None) -> None:
    import uvicorn

    if ref:
        use_chatter_from(ref)

    from ark_runtime.api.app import create_app
    from ark_runtime.api.operators import Operator
    from ark_runtime.config import RedisSettings

    ops = {"bench": Operator("bench", "viewer", os.environ["BENCH_OPERATOR_HASH"])}
    app = create_app(RedisSettings(port=redis_port, password=os.environ["BENCH_REDIS_PASSWORD"]),
                     secret=secrets.token_urlsafe(40), operators=ops)
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                ws="websockets-sansio", log_level="error", timeout_graceful_shutdown=3)


def sign_in(base: str, password: str) -> str:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    data = urllib.parse.urlencode({"username": "bench", "password": password}).encode()
    try:
        opener.open(urllib.request.Request(f"{base}/login", data=data), timeout=10)
    except urllib.error.HTTPError as exc:
        if exc.code != 303:
            raise
        return exc.headers["set-cookie"].split(";", 1)[0]
    raise SystemExit("sign-in did not answer 303")


async def one_run(base: str, cookie: str, redis_port: int, redis_password: str,
                  args) -> dict:
    import redis.asyncio as aioredis
    import websockets

    from ark_runtime.bus.envelope import Envelope
    from ark_runtime.bus.streams import inbox
    from ark_runtime.market import Bar

    sent: dict[str, float] = {}
    latencies: list[float] = []
    dropped = [0]
    # batch=1 as the console page asks; a server without batches ignores it.
    ws_url = base.replace("http", "ws") + "/ws/chatter?agent=joey&type=market.bar&batch=1"
    clients = [await websockets.connect(ws_url, additional_headers={"Cookie": cookie},
                                        max_queue=None) for _ in range(args.clients)]
    for c in clients:
        assert json.loads(await c.recv())["type"] == "hello"

    async def listen(c) -> None:
        async for raw in c:
            now = time.time()
            data = json.loads(raw)
            for msg in data if isinstance(data, list) else [data]:
                if msg.get("type") == "dropped":
                    dropped[0] += msg["count"]
                t0 = sent.get(msg.get("message_id"))
                if t0 is not None:
                    latencies.append((now - t0) * 1000)

    listeners = [asyncio.create_task(listen(c)) for c in clients]
    r = aioredis.Redis(port=redis_port, password=redis_password)
    per_tick = max(1, args.rate // 100)  # one pipelined XADD batch every 10 ms
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < args.duration:
        pipe = r.pipeline(transaction=False)
        ids = []
        for _ in range(per_tick):
            bar = Bar(symbol="BENCH", ts=datetime.now(UTC), open=1, high=2, low=0.5, close=1.5,
                      volume=10)
            env = Envelope.new("market.bar", bar, from_agent="kyle", to_agent="joey")
            pipe.xadd(inbox("joey"), env.to_fields(), maxlen=100_000, approximate=True)
            ids.append(env.message_id)
        t0 = time.time()
        for mid in ids:
            sent[mid] = t0
        await pipe.execute()
        n += per_tick
        next_at = start + (n / args.rate)
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await asyncio.sleep(1.0)  # let the last ones arrive
    for c in clients:
        await c.close()
    for t in listeners:
        t.cancel()
    await r.aclose()
    lat = sorted(latencies)
    expected = n * args.clients
    return {"published": n, "received": len(lat), "expected": expected, "dropped": dropped[0],
            "p50_ms": round(lat[len(lat) // 2], 3) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 3) if lat else None,
            "max_ms": round(lat[-1], 3) if lat else None}


def measure(port: int, redis_port: int, redis_password: str, ref: str, env: dict,
            args) -> dict:
    """One run against a fresh API process (CPU 0) with the chatter hub of `ref`."""
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, __file__, "--serve", "--port", str(port),
         "--redis-port", str(redis_port), "--ref", ref], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(f"{base}/health")
        cookie = sign_in(base, PASSWORD)
        # The server's own CPU for the run: its cost, whatever else the machine is doing.
        before = sum(psutil.Process(server.pid).cpu_times()[:2])
        result = asyncio.run(one_run(base, cookie, redis_port, redis_password, args))
        used = sum(psutil.Process(server.pid).cpu_times()[:2]) - before
        return {**result, "server_cpu_s": round(used, 2),
                "server_cpu_us_per_delivery": round(used * 1e6 / max(1, result["received"]),
                                                    1)}
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=int, default=500)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", type=Path)
    p.add_argument("--baseline-ref", default="5eeee46",
                   help="git ref whose chatter.py is the baseline ('' for current only)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ref", default="", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--redis-port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.port, args.redis_port, args.ref or None)
        return 0
    from ark_runtime.api.passwords import hash_password

    redis_password, redis_port, port = secrets.token_hex(16), free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="ark-bench-redis-"))
    env = {**os.environ, "BENCH_REDIS_PASSWORD": redis_password,
           "BENCH_OPERATOR_HASH": hash_password(PASSWORD, n=2**12)}
    procs = [subprocess.Popen(
        ["taskset", "-c", "1", shutil.which("redis-server") or "/usr/bin/redis-server",
         "--port", str(redis_port), "--bind", "127.0.0.1", "--requirepass", redis_password,
         "--save", "", "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)]
    variants = (["baseline"] if args.baseline_ref else []) + ["current"]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    try:
        time.sleep(0.3)
        for i in range(args.runs):
            for variant in variants:  # alternate, so both see the same machine load
                ref = args.baseline_ref if variant == "baseline" else ""
                result = measure(port, redis_port, redis_password, ref, env, args)
                runs[variant].append(result)
                print(f"run {i + 1}/{args.runs} {variant}: {result}", flush=True)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    report = {"rate": args.rate, "clients": args.clients, "duration_s": args.duration,
              "baseline_ref": args.baseline_ref or None, "goal_p99_ms": 20,
              **{v: {"median_p50_ms": statistics.median(r["p50_ms"] for r in rs),
                     "median_p99_ms": statistics.median(r["p99_ms"] for r in rs),
                     "median_server_cpu_us_per_delivery":
                         statistics.median(r["server_cpu_us_per_delivery"] for r in rs),
                     "runs": rs} for v, rs in runs.items()}}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
