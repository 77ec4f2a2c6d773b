"""`invoke load --generator wrk` (issue #23 §5): the console's signed-in read mix (mix.py)
driven by wrk and mix.lua, with wrk's own CPU next to the API's, so a reader sees which of
the two was saturated.

The password comes from ARK_LOAD_PASSWORD (environment only); this process signs in once,
hands wrk the session in a 0600 file (ARK_WRK_MIX), and signs out at the end. Neither the
password nor the session cookie is ever on a command line, in the report or in an error.
WebSocket chatter is outside wrk: `chatter` listeners (websockets) hold /ws/chatter open
with the same session during the run and count the frames they get.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from ark_ops.errors import OpsError
from ark_ops.load import mix
from ark_runtime.bus.codec import CANONICAL_UUID

MARK = "ARK-WRK-JSON "


def parse_wrk(stdout: str) -> dict:
    """mix.lua's done() line, as numbers: RPS, latency in ms, errors."""
    for line in stdout.splitlines():
        if line.startswith(MARK):
            try:
                raw = json.loads(line[len(MARK):])
                seconds = raw["duration_us"] / 1e6
                pct = raw["latency_us"]["percentiles"]
                errors = raw["errors"]
                return {
                    "requests": int(raw["requests"]), "duration_s": round(seconds, 3),
                    "rps": round(raw["requests"] / seconds, 1) if seconds > 0 else 0.0,
                    "p50_ms": pct["50"] / 1000, "p90_ms": pct["90"] / 1000,
                    "p99_ms": pct["99"] / 1000, "p999_ms": pct["99.9"] / 1000,
                    "max_ms": raw["latency_us"]["max"] / 1000,
                    "errors": sum(int(v) for v in errors.values()),
                    "errors_by_kind": {k: int(v) for k, v in errors.items()},
                    "bytes": int(raw["bytes"]), "sent": raw.get("sent", {})}
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise OpsError(f"wrk: unreadable summary line ({type(exc).__name__})") from None
    raise OpsError("wrk: no summary line in its output (did mix.lua run?)")


# --- sign-in ------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def _opener(url: str) -> urllib.request.OpenerDirector:
    handlers: list = [_NoRedirect]
    if url.startswith("https://"):
        ca = os.environ.get("ARK_LOAD_CA")  # the fleet's CA; else the system's
        handlers.append(urllib.request.HTTPSHandler(
            context=ssl.create_default_context(cafile=ca or None)))
    return urllib.request.build_opener(*handlers)


def _get_json(opener, url: str, cookie: str | None = None) -> dict:
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with opener.open(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        path = urllib.parse.urlparse(url).path
        raise OpsError(f"GET {path} answered {exc.code}") from None
    except (OSError, ValueError) as exc:
        path = urllib.parse.urlparse(url).path
        raise OpsError(f"GET {path}: {type(exc).__name__}") from None


def credentials(env: dict[str, str] | None = None) -> tuple[str, str]:
    env = os.environ if env is None else env
    user, password = env.get("ARK_LOAD_USER"), env.get("ARK_LOAD_PASSWORD")
    if not (user and password):
        raise OpsError("--generator wrk signs in: set ARK_LOAD_USER and ARK_LOAD_PASSWORD in "
                       "the environment (never on the command line)")
    return user, password


def sign_in(url: str, user: str, password: str) -> tuple[mix.Session, dict]:
    """A session for the mix, and the API's OpenAPI document."""
    opener = _opener(url)
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    cookie = None
    try:
        opener.open(urllib.request.Request(f"{url}/login", data=data), timeout=30)
    except urllib.error.HTTPError as exc:
        if exc.code == 303:
            cookie = (exc.headers.get("set-cookie") or "").split(";", 1)[0]
        else:  # the status only: the answer may echo what was sent
            raise OpsError(f"sign-in as {user!r} answered {exc.code}") from None
    except OSError as exc:
        raise OpsError(f"sign-in: {url} unreachable ({type(exc).__name__})") from None
    if not cookie:
        raise OpsError(f"sign-in as {user!r}: no session cookie in the answer")
    me = _get_json(opener, f"{url}/api/me", cookie)
    session = mix.Session(cookie=cookie, csrf=me["csrf"])
    doc = _get_json(opener, f"{url}/openapi.json")
    # Follow the logs from where they are now, and trace an id the logs really hold.
    logs = _get_json(opener, f"{url}/api/logs?lines=200", cookie)
    session.cursor = logs.get("cursor", "")
    ids = [e["correlation_id"] for e in logs.get("lines", [])
           if isinstance(e.get("correlation_id"), str)
           and CANONICAL_UUID.match(e["correlation_id"])]
    if ids:
        session.trace_id = ids[-1]
    return session, doc


def sign_out(url: str, session: mix.Session) -> None:
    req = urllib.request.Request(f"{url}/logout", data=b"", method="POST", headers={
        "Cookie": session.cookie, "X-CSRF-Token": session.csrf})
    # On failure the session still ends on its own (the idle timeout).
    with contextlib.suppress(OSError, urllib.error.HTTPError):
        _opener(url).open(req, timeout=10)


# --- chatter listeners ----------------------------------------------------------------------

@dataclass
class Chatter:
    """`count` WebSocket clients on /ws/chatter for the run, in a thread of their own."""

    url: str
    cookie: str
    count: int
    frames: int = 0
    connected: int = 0
    error: str | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        import websockets

        ws_url = re.sub(r"^http", "ws", self.url) + "/ws/chatter"
        context = None
        if ws_url.startswith("wss://"):
            context = ssl.create_default_context(cafile=os.environ.get("ARK_LOAD_CA") or None)
        clients = []
        try:
            for _ in range(self.count):
                clients.append(await websockets.connect(
                    ws_url, ssl=context, open_timeout=30, max_queue=None,
                    additional_headers={"Cookie": self.cookie}))
                self.connected += 1
        except (OSError, websockets.WebSocketException) as exc:
            self.error = type(exc).__name__

        async def listen(c) -> None:
            try:
                async for _frame in c:
                    self.frames += 1
            except websockets.ConnectionClosed:
                pass

        tasks = [asyncio.create_task(listen(c)) for c in clients]
        while not self._stop.is_set():
            await asyncio.sleep(0.1)
        for c in clients:
            await c.close()
        for t in tasks:
            t.cancel()

    def start(self) -> None:
        if self.count:
            self._thread.start()
            deadline = time.monotonic() + 30
            while self.connected + (self.error is not None) < self.count and \
                    self.error is None and time.monotonic() < deadline:
                time.sleep(0.05)

    def stop(self) -> dict:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        return {"clients": self.count, "connected": self.connected, "frames": self.frames,
                **({"error": self.error} if self.error else {})}


# --- the run --------------------------------------------------------------------------------

def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def wrk_command(url: str, seconds: int, connections: int, threads: int,
                wrk: str = "wrk") -> list[str]:
    """wrk's argv: no secret in it (the session is in the ARK_WRK_MIX file)."""
    return [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(mix.LUA_SCRIPT), url]


def run_wrk(cmd: list[str], env: dict[str, str], cpu: str | None = None) -> tuple[str, float]:
    """wrk's stdout and the CPU seconds it used (user + system, from its own rusage)."""
    if cpu:
        cmd = ["taskset", "-c", cpu, *cmd]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    # Both pipes drained while wrk runs (neither can fill and stall it); wait4 for its rusage.
    chunks: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n=n, f=f: chunks.__setitem__(n, f.read()),
                                daemon=True)
               for n, f in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join(10)
    proc.stdout.close()
    proc.stderr.close()
    err = chunks.get("err", b"").decode(errors="replace")
    if proc.returncode != 0:
        raise OpsError(f"wrk failed (exit {proc.returncode}): {err.strip()[-500:]}")
    return chunks.get("out", b"").decode(errors="replace"), usage.ru_utime + usage.ru_stime


def measure(url: str, session: mix.Session, doc: dict, *, seconds: int, connections: int,
            threads: int = 1, rate: int = 0, api_pid: int | None = None,
            chatter: int = 0, wrk_cpu: str | None = None, workdir: Path | None = None,
            reqs: list[mix.Request] | None = None) -> dict:
    """One wrk run of the mix (or of `reqs`, e.g. /health alone for a baseline through the
    same script): the figures, wrk's CPU and the API process's."""
    wrk = shutil.which("wrk")
    if not wrk:
        raise OpsError("wrk is not installed (apt-get install wrk)")
    from ark_runtime.api.chatter import PER_OPERATOR

    if not 0 <= chatter <= PER_OPERATOR:
        raise OpsError(f"--chatter: 0 to {PER_OPERATOR} (the API's chatter sockets per "
                       "operator; the run signs in once)")
    reqs = mix.requests(doc, session) if reqs is None else reqs
    private = Path(tempfile.mkdtemp(prefix="ark-wrk-", dir=workdir))
    try:
        mix_file = mix.write_private(private, "mix", mix.render_mix_file(session, reqs))
        env = {**os.environ, "ARK_WRK_MIX": str(mix_file)}
        env.pop("ARK_LOAD_PASSWORD", None)  # wrk has no use for it
        if rate:
            env["ARK_WRK_RATE_PER_THREAD"] = f"{rate / threads:.3f}"
        api = psutil.Process(api_pid) if api_pid else None
        listeners = Chatter(url, session.cookie, chatter)
        listeners.start()
        try:
            api_before = cpu_seconds(api) if api else 0.0
            started = time.monotonic()
            stdout, wrk_cpu_s = run_wrk(wrk_command(url, seconds, connections, threads, wrk),
                                        env, wrk_cpu)
            wall = time.monotonic() - started
            api_cpu_s = cpu_seconds(api) - api_before if api else None
            api_rss = round(api.memory_info().rss / 2**20, 1) if api else None
        finally:
            chat = listeners.stop()
    finally:
        shutil.rmtree(private, ignore_errors=True)
    result = parse_wrk(stdout)
    result.update({
        "connections": connections, "wrk_threads": threads, "offered_rps": rate or None,
        "wall_s": round(wall, 2),
        "generator": {"cpu_s": round(wrk_cpu_s, 2), "cores_busy": round(wrk_cpu_s / wall, 2),
                      "threads": threads},
        "api": None if api_cpu_s is None else {
            "pid": api_pid, "cpu_s": round(api_cpu_s, 2),
            "cores_busy": round(api_cpu_s / wall, 2), "rss_mib": api_rss,
            "requests_per_cpu_s": round(result["requests"] / api_cpu_s) if api_cpu_s else None},
        "chatter": chat if chatter else None,
        "mix": [{"name": r.name, "weight": r.weight, "route": r.route} for r in reqs]})
    return result


def render(r: dict) -> str:
    gen, api = r["generator"], r.get("api")
    lines = [f"# Load test (wrk, signed-in mix) {r['started']}", "",
             f"{r['host']}: {r['connections']} connections, {r['wrk_threads']} wrk thread(s), "
             + (f"offered {r['offered_rps']} RPS, " if r.get("offered_rps") else "unpaced, ")
             + f"{r['duration_s']} s: **{r['rps']} RPS**, p50 {r['p50_ms']} ms, "
             f"p90 {r['p90_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms, "
             f"errors {r['errors']} of {r['requests']} {r['errors_by_kind']}"
             + (f"; this machine's load average {r['load_average']}"
                if r.get("load_average") else ""), "",
             "| process | CPU s | cores busy | note |", "|---|---|---|---|",
             f"| wrk (generator) | {gen['cpu_s']} | {gen['cores_busy']} of "
             f"{gen['threads']} thread(s) | saturated when cores busy ≈ threads |"]
    if api:
        lines.append(f"| API pid {api['pid']} | {api['cpu_s']} | {api['cores_busy']} of 1 "
                     f"(one worker) | {api['requests_per_cpu_s']} requests per CPU s, "
                     f"RSS {api['rss_mib']} MiB |")
    else:
        lines.append("| API | ? | ? | process not found; pass --api-pid |")
    lines += ["", "| route (weight) | requests sent |", "|---|---|"]
    for m in r["mix"]:
        lines.append(f"| {m['name']} `{m['route']}` ({m['weight']}) | "
                     f"{r['sent'].get(m['name'], 0)} |")
    if r.get("chatter"):
        lines += ["", f"chatter: {json.dumps(r['chatter'])}"]
    return "\n".join(lines) + "\n"
