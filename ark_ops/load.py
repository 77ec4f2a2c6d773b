"""`invoke load` (TEST_03): drive the console API with locust, headless, over a realistic mix,
and write reports/load/<stamp>/ with p50/p95/p99, error rate and the API's CPU and RSS.

The API process is found by its listening port when the target is on this machine's network
namespace, else as the one `ark api` process in the lab host's cgroup (the lab's guests are
this machine's processes), or given with --api-pid.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import psutil

from ark_ops.errors import OpsError

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def parse_duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip()
    try:
        if text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except (ValueError, IndexError):
        raise OpsError(f"--duration: {text!r} is not a duration like 60s or 2m") from None


def find_api_pid(host: str, port: int, machine: str | None) -> int | None:
    if host in ("127.0.0.1", "localhost", "::1"):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                return conn.pid
    candidates = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if not cmd.endswith("bin/ark api"):
            continue
        try:
            cgroup = Path(f"/proc/{proc.pid}/cgroup").read_text()
        except OSError:
            continue
        if machine is None or machine in cgroup:
            candidates.append(proc.pid)
    return candidates[0] if len(candidates) == 1 else None


@dataclass
class Sampler:
    """CPU % and RSS of one process, once a second, in a thread."""

    pid: int
    samples: list[dict] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        proc = psutil.Process(self.pid)
        proc.cpu_percent(None)
        while not self._stop.wait(1.0):
            try:
                self.samples.append({"t": time.time(), "cpu_percent": proc.cpu_percent(None),
                                     "rss_mib": round(proc.memory_info().rss / 2**20, 1)})
            except psutil.Error:
                return

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread

    def stop(self) -> dict:
        self._stop.set()
        cpu = [s["cpu_percent"] for s in self.samples] or [0]
        rss = [s["rss_mib"] for s in self.samples] or [0]
        return {"pid": self.pid, "cpu_percent_mean": round(sum(cpu) / len(cpu), 1),
                "cpu_percent_max": max(cpu), "rss_mib_max": max(rss),
                "rss_mib_start": rss[0], "rss_mib_end": rss[-1], "samples": len(self.samples)}


def summarise(stats_csv: Path) -> dict:
    rows = {}
    with stats_csv.open() as f:
        for row in csv.DictReader(f):
            n = int(row["Request Count"])
            rows[row["Name"]] = {
                "requests": n, "failures": int(row["Failure Count"]),
                "rps": round(float(row["Requests/s"]), 1),
                "p50_ms": float(row["50%"] or 0), "p95_ms": float(row["95%"] or 0),
                "p99_ms": float(row["99%"] or 0),
                "error_rate": round(int(row["Failure Count"]) / n, 5) if n else 0.0}
    return rows


def run_load(host: str, rps: int, duration: str, out_root: Path, users_rps: float = 1.0,
             api_pid: int | None = None, machine: str | None = None) -> Path:
    seconds = parse_duration(duration)
    if rps < 1:
        raise OpsError("--rps: must be at least 1")
    locust = shutil.which("locust") or str(Path(sys.executable).with_name("locust"))
    if not Path(locust).exists():
        raise OpsError("locust is not installed in this venv (./ops installs the lock)")
    url = host if "://" in host else f"http://{host}:8101"
    parsed = urlparse(url)
    out = out_root / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    pid = api_pid or find_api_pid(parsed.hostname or "", parsed.port or 80, machine)
    sampler = Sampler(pid) if pid else None
    users = max(1, int(rps / users_rps))
    cmd = [locust, "-f", str(LOCUSTFILE), "--headless", "--host", url, "-u", str(users),
           "-r", str(min(users, 200)), "-t", f"{seconds}s", "--csv", str(out / "locust"),
           "--only-summary", "--stop-timeout", "5", "--exit-code-on-error", "0"]
    env = {**os.environ, "ARK_LOAD_PER_USER_RPS": str(users_rps)}
    if sampler:
        sampler.start()
    started = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    (out / "locust.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not (out / "locust_stats.csv").exists():
        raise OpsError(f"locust failed (exit {proc.returncode}); see {out / 'locust.log'}")
    endpoints = summarise(out / "locust_stats.csv")
    total = endpoints.pop("Aggregated", {})
    report = {"host": url, "target_rps": rps, "duration_s": seconds, "users": users,
              "started": datetime.fromtimestamp(started, UTC).isoformat(),
              "achieved_rps": total.get("rps"), "p50_ms": total.get("p50_ms"),
              "p95_ms": total.get("p95_ms"), "p99_ms": total.get("p99_ms"),
              "error_rate": total.get("error_rate"), "endpoints": endpoints,
              "api_process": sampler.stop() if sampler else
              {"error": "API process not found; pass --api-pid"}}
    if sampler:
        (out / "api_samples.json").write_text(json.dumps(sampler.samples) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render(report))
    return out


def render(r: dict) -> str:
    lines = [f"# Load test {r['started']}", "",
             f"target {r['target_rps']} RPS for {r['duration_s']} s against {r['host']} "
             f"({r['users']} users): achieved {r['achieved_rps']} RPS, "
             f"p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, p99 {r['p99_ms']} ms, "
             f"error rate {r['error_rate']}", "",
             "| endpoint | requests | RPS | p50 | p95 | p99 | errors |",
             "|---|---|---|---|---|---|---|"]
    for name, e in r["endpoints"].items():
        lines.append(f"| {name} | {e['requests']} | {e['rps']} | {e['p50_ms']} | {e['p95_ms']} "
                     f"| {e['p99_ms']} | {e['error_rate']} |")
    lines += ["", f"API process: {json.dumps(r['api_process'])}", ""]
    return "\n".join(lines)
