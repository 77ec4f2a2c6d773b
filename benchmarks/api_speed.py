"""API speed: `/health` requests per second, the ARK API side by side with a bare Starlette app.

    .venv/bin/python benchmarks/api_speed.py [--runs 5] [--duration 5] [--connections 50]

Each variant is one uvicorn worker (uvloop + httptools) pinned to CPU 0 while `wrk` (Debian
package `wrk`) drives it from CPU 1, against a real redis-server:
* ark   — `ark_runtime.api.app.create_app()`: the full app (auth, error handlers, routers);
* bare  — a bare Starlette app doing the same work: the same cached Redis ping, same body;
* noping — a bare Starlette app answering a constant body (the ceiling on this machine).
Runs alternate between the variants; the report gives medians and ark/bare.
Goal (issue 10): ark >= 5,000 RPS and >= 0.8 x bare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from redis_proc import RedisProc, free_port  # noqa: E402  (free_port: chatter_latency's too)


def build(variant: str, redis_port: int, password: str):
    from ark_runtime.config import RedisSettings

    if variant == "ark":
        from ark_runtime.api.app import create_app

        return create_app(RedisSettings(port=redis_port, password=password),
                          secret=secrets.token_urlsafe(40), operators={})
    import redis.asyncio as aioredis
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from ark_runtime.api.health import CachedPing, health_body

    state: dict = {}

    async def health(request):
        if variant == "noping":
            return Response(b'{"status":"ok"}', media_type="application/json")
        status, body = health_body(await state["ping"].get())
        return Response(body, status_code=status, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        client = aioredis.Redis(port=redis_port, password=password)
        state["ping"] = CachedPing(client)
        yield
        await client.aclose()

    return Starlette(routes=[Route("/health", health)], lifespan=lifespan)


def serve(variant: str, port: int, redis_port: int, password: str) -> None:
    import uvicorn

    uvicorn.run(build(variant, redis_port, password), host="127.0.0.1", port=port,
                loop="uvloop", http="httptools", log_level="error", access_log=False)


def wait_up(url: str, timeout: float = 15, context=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} never answered")


def run_wrk(url: str, duration: int, connections: int) -> float:
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}",
                          f"-d{duration}s", url], capture_output=True, text=True, check=True)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if not m or errors:
        raise SystemExit(f"wrk: unexpected output:\n{out.stdout}")
    return float(m.group(1))


def measure(variant: str, redis_port: int, password: str, args) -> float:
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__, "--serve", variant,
                             "--port", str(port), "--redis-port", str(redis_port)],
                            env={**os.environ, "BENCH_REDIS_PASSWORD": password})
    try:
        url = f"http://127.0.0.1:{port}/health"
        wait_up(url)
        run_wrk(url, 1, args.connections)  # warm-up
        return run_wrk(url, args.duration, args.connections)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--serve", choices=["ark", "bare", "noping"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--redis-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.redis_port, os.environ["BENCH_REDIS_PASSWORD"])
        return 0
    if not shutil.which("wrk"):
        print("api_speed: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 69
    results: dict[str, list[float]] = {"ark": [], "bare": [], "noping": []}
    with RedisProc(cpu=1) as server:
        for i in range(args.runs):
            for variant in results:
                rps = measure(variant, server.port, server.password, args)
                results[variant].append(rps)
                print(f"run {i + 1}/{args.runs} {variant:7s} {rps:9.0f} RPS", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    report = {"runs": args.runs, "duration_s": args.duration, "connections": args.connections,
              "median_rps": {k: round(v) for k, v in med.items()},
              "ratio_ark_to_bare": round(med["ark"] / med["bare"], 3), "all_rps": results,
              "goal": {"ark_rps": 5000, "ratio": 0.8}}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
