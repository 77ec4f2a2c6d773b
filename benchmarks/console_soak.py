"""Console soak (issue 21, vuln 5): 200 chatter clients, some never reading, while /health is
polled — its latency and the API's memory, baseline and current side by side.

    .venv/bin/python benchmarks/console_soak.py [--clients 200] [--stalled 10] [--rate 200]
                                                [--duration 20] [--runs 2]
                                                [--baseline-ref 53e9ff0] [--tls]

A real redis-server and the real API (uvicorn, uvloop + httptools, the settings `ark api`
uses, pinned to CPU 0). --clients WebSockets on /ws/chatter (batch=1, as the console page
asks), signed in as 8 per operator (the per-operator cap); --stalled of them complete the
handshake and then never read, with a 4 KiB receive buffer. Envelopes of ~1 KiB go into
Joey's inbox at --rate/s. /health is asked every 20 ms over one keep-alive connection, from a
process of its own (pinned with Redis to CPU 1; in the clients' process each answer waited
behind the readers' frames on that event loop).
Reported per run: /health p50/p99/max, the API's peak RSS, and how many stalled clients'
connections the server still held open at the end. Goal: /health p99 < 50 ms, peak RSS < 300 MB.

--tls serves both variants over HTTPS as the role deploys the console (uvicorn, a certificate
from ark_ops.pki's CA; every client verifies it, the stalled ones too).

The baseline is the whole ark_runtime package as it was at --baseline-ref (exported with
git archive and put first on the server's PYTHONPATH); current is the working tree. Runs
alternate so both see the same machine load; the report gives medians over --runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if "--serve" not in sys.argv:  # the server imports ark_runtime from its PYTHONPATH
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

import psutil  # noqa: E402
from api_speed import free_port, wait_up  # noqa: E402
from redis_proc import RedisProc  # noqa: E402

PASSWORD = "soak-" + secrets.token_hex(8)
PER_OPERATOR = 8


def tls_context() -> ssl.SSLContext | None:
    """The clients' verifying context under --tls (the CA in $SOAK_TLS_DIR), else None."""
    tls_dir = os.environ.get("SOAK_TLS_DIR")
    return ssl.create_default_context(cafile=f"{tls_dir}/ca.crt") if tls_dir else None


def serve(port: int, redis_port: int, operators: int) -> None:
    import uvicorn

    from ark_runtime.api.app import create_app
    from ark_runtime.api.operators import Operator
    from ark_runtime.config import RedisSettings

    hashed = os.environ["SOAK_OPERATOR_HASH"]
    ops = {f"op{i}": Operator(f"op{i}", "viewer", hashed) for i in range(operators)}
    app = create_app(RedisSettings(port=redis_port, password=os.environ["SOAK_REDIS_PASSWORD"]),
                     secret=secrets.token_urlsafe(40), operators=ops, login_limit=1000)
    tls_dir = os.environ.get("SOAK_TLS_DIR")
    tls = {"ssl_certfile": f"{tls_dir}/soak.crt", "ssl_keyfile": f"{tls_dir}/soak.key"} \
        if tls_dir else {}
    try:
        from ark_runtime.api.server import server_config
    except ImportError:  # the baseline had no server_config: its arguments, inline
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                loop="uvloop", http="httptools", ws="websockets-sansio",
                                lifespan="on", timeout_graceful_shutdown=3, **tls)
    else:
        config = server_config(app, "127.0.0.1", port, log_level="error",
                               timeout_graceful_shutdown=3, **tls)
    uvicorn.Server(config).run()


def login(base: str, user: str) -> str:
    import httpx

    resp = httpx.post(base + "/login", data={"username": user, "password": PASSWORD},
                      timeout=30, verify=tls_context() or True)
    if resp.status_code != 303:
        raise SystemExit(f"sign-in as {user}: {resp.status_code} {resp.text[:200]}")
    return resp.cookies["ark_session"]


def stalled_socket(port: int, cookie: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    if (ctx := tls_context()) is not None:
        sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws/chatter?batch=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Cookie: ark_session={cookie}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"stalled socket refused: {head[:80]!r}")
    return sock


def still_held(server_pid: int, stalled: list[socket.socket]) -> int:
    """How many stalled clients' connections the server still holds open (its side, seen
    before the client reads anything: reading would let a graceful close complete)."""
    ports = {s.getsockname()[1] for s in stalled}
    return sum(1 for c in psutil.Process(server_pid).net_connections(kind="tcp")
               if c.raddr and c.raddr.port in ports and c.status == "ESTABLISHED")


async def run_clients(base: str, port: int, cookies: list[str], args,
                      server_pid: int) -> dict:
    import redis.asyncio as aioredis
    import websockets

    from ark_runtime.bus.streams import inbox

    ws_url = base.replace("http", "ws") + "/ws/chatter?batch=1"
    readers = []
    for i in range(args.clients - args.stalled):
        c = await websockets.connect(ws_url, max_queue=None, open_timeout=30, ssl=tls_context(),
                                     additional_headers={"Cookie": f"ark_session="
                                                         f"{cookies[i // PER_OPERATOR]}"})
        readers.append(c)
    stalled = [stalled_socket(port, cookies[(args.clients - args.stalled + i) // PER_OPERATOR])
               for i in range(args.stalled)]
    received = [0]

    async def listen(c) -> None:
        try:
            async for _raw in c:
                received[0] += 1
        except websockets.ConnectionClosed:
            pass

    listeners = [asyncio.create_task(listen(c)) for c in readers]
    stop = asyncio.Event()

    async def publish() -> None:
        r = aioredis.Redis(port=args.redis_port, password=args.redis_password)
        envelope = json.dumps({"from_agent": "kyle", "to_agent": "joey", "type": "market.bar",
                               "payload": {"blob": "x" * 1000}})
        per_tick = max(1, args.rate // 50)
        while not stop.is_set():
            pipe = r.pipeline(transaction=False)
            for _ in range(per_tick):
                pipe.xadd(inbox("joey"), {"type": "market.bar", "envelope": envelope},
                          maxlen=20_000, approximate=True)
            await pipe.execute()
            await asyncio.sleep(0.02)
        await r.aclose()

    # /health is polled from a process of its own (CPU 1, with Redis): in this one it would
    # wait behind the ~190 readers' frames on this event loop and count that as the API's.
    poller = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, __file__, "--poll", base,
         "--duration", str(args.duration)], stdout=subprocess.PIPE, env=os.environ.copy())
    tasks = [asyncio.create_task(publish())]
    await asyncio.sleep(args.duration)
    stop.set()
    await asyncio.gather(*tasks)
    out, _ = await asyncio.to_thread(poller.communicate, timeout=60)
    health = json.loads(out)
    held = still_held(server_pid, stalled)
    for c in readers:
        await c.close()
    for t in listeners:
        t.cancel()
    for s in stalled:
        s.close()
    lat = sorted(health)
    return {"health_requests": len(lat), "health_p50_ms": round(lat[len(lat) // 2], 2),
            "health_p99_ms": round(lat[int(len(lat) * 0.99) - 1], 2),
            "health_max_ms": round(lat[-1], 2), "frames_received": received[0],
            "stalled_still_held": held}


def poll(base: str, seconds: float) -> list[float]:
    """/health every 20 ms over one keep-alive connection for `seconds`: each one's ms."""
    import httpx

    health: list[float] = []
    with httpx.Client(base_url=base, timeout=30, verify=tls_context() or True) as http:
        http.get("/health")  # the connection up before timing
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            http.get("/health")
            health.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
    return health


def measure(port: int, env: dict, args, pythonpath: str) -> dict:
    operators = -(-args.clients // PER_OPERATOR)
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, __file__, "--serve", "--port", str(port),
         "--redis-port", str(args.redis_port), "--operators", str(operators)],
        env={**env, "PYTHONPATH": pythonpath})
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        proc = psutil.Process(server.pid)
        while not done.is_set():
            try:
                peak[0] = max(peak[0], proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        base = f"{'https' if tls_context() else 'http'}://127.0.0.1:{port}"
        wait_up(f"{base}/health", context=tls_context())
        sampler.start()
        cookies = [login(base, f"op{i}") for i in range(operators)]
        result = asyncio.run(run_clients(base, port, cookies, args, server.pid))
        return {**result, "api_peak_rss_mb": round(peak[0] / 2**20, 1)}
    finally:
        done.set()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def export(ref: str, into: Path) -> None:
    data = subprocess.run(["git", "-C", str(REPO), "archive", ref, "ark_runtime"],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--stalled", type=int, default=10)
    p.add_argument("--rate", type=int, default=200)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--json", type=Path)
    p.add_argument("--tls", action="store_true", help="serve and connect over HTTPS")
    p.add_argument("--baseline-ref", default="53e9ff0",
                   help="git ref whose ark_runtime is the baseline ('' for current only)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--redis-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--operators", type=int, help=argparse.SUPPRESS)
    p.add_argument("--poll", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.poll:
        print(json.dumps(poll(args.poll, args.duration)))
        return 0
    if args.serve:
        serve(args.port, args.redis_port, args.operators)
        return 0
    from ark_runtime.api.passwords import hash_password

    args.redis_password, args.redis_port = secrets.token_hex(16), free_port()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="ark-soak-"))
    env = {**os.environ, "SOAK_REDIS_PASSWORD": args.redis_password,
           "SOAK_OPERATOR_HASH": hash_password(PASSWORD, n=2**12)}
    for sub in ("state", "log", "audit", "etc"):
        (workdir / sub).mkdir()
    if args.tls:
        from ark_ops.pki import CertificateAuthority

        CertificateAuthority(workdir / "tls").issue("soak", ["127.0.0.1", "localhost"])
        env["SOAK_TLS_DIR"] = os.environ["SOAK_TLS_DIR"] = str(workdir / "tls")
    env.update(ARK_STATE_DIR=str(workdir / "state"), ARK_LOG_DIR=str(workdir / "log"),
               ARK_CONFIG_DIR=str(workdir / "etc"),
               # The audit records: stderr (no journald here); a baseline from before the
               # journal (issue 21, vuln 6) spools them to a file instead.
               ARK_AUDIT_SINK="stderr", ARK_AUDIT_SPOOL_DIR=str(workdir / "audit"))
    redis_server = RedisProc(cpu=1, port=args.redis_port,
                             password=args.redis_password).__enter__()
    paths = {"current": str(REPO)}
    if args.baseline_ref:
        export(args.baseline_ref, workdir / "baseline")
        paths = {"baseline": str(workdir / "baseline"), **paths}
    runs: dict[str, list[dict]] = {v: [] for v in paths}
    try:
        time.sleep(0.3)
        for i in range(args.runs):
            for variant, path in paths.items():  # alternate: same machine load for both
                result = measure(port, env, args, path)
                runs[variant].append(result)
                print(f"run {i + 1}/{args.runs} {variant}: {result}", flush=True)
    finally:
        redis_server.__exit__(None, None, None)
        shutil.rmtree(workdir, ignore_errors=True)
    report = {"clients": args.clients, "stalled": args.stalled, "rate": args.rate,
              "tls": args.tls,
              "duration_s": args.duration, "baseline_ref": args.baseline_ref or None,
              "goal": {"health_p99_ms": 50, "api_peak_rss_mb": 300},
              **{v: {key: statistics.median(r[key] for r in rs)
                     for key in ("health_p50_ms", "health_p99_ms", "health_max_ms",
                                 "api_peak_rss_mb", "stalled_still_held")}
                 | {"runs": rs} for v, rs in runs.items()}}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
