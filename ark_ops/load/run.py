"""`invoke load` (TEST_03): drive the console API with locust, headless, over a realistic mix,
and write reports/load/<stamp>/ with p50/p95/p99, error rate and the API's CPU and RSS.

The API process is found by its listening port when the target is on this machine's network
namespace, else as the one `ark api` process in the lab host's cgroup (the lab's guests are
this machine's processes), or given with --api-pid.

One locust process tops out below 500 RPS on this machine, so above LOCUST_RPS_PER_PROCESS
the load is spread over one locust worker per CPU (`--processes`); the report gives requested
vs achieved RPS (the whole run's mean and the steady-state median once every user runs) and
the load generator's own CPU, so a generator that was the bottleneck shows as such.

`run_load_wrk` (`--generator wrk`) drives the console's signed-in read mix instead (mix.py,
mix.lua, wrk.py): wrk's CPU beside the API's in the same report.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import statistics
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
LOCUST_RPS_PER_PROCESS = 250  # one locust process on this machine manages ~450 RPS at 100 % CPU


def worker_processes(rps: int, requested: int | None = None) -> int:
    """How many locust workers: as asked, else one per CPU once one is not enough."""
    if requested is not None:
        if requested < 1:
            raise OpsError("--processes: must be at least 1")
        return requested
    return 1 if rps <= LOCUST_RPS_PER_PROCESS else max(1, os.cpu_count() or 1)


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
    everywhere, candidates = [], []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if not cmd.endswith("bin/ark api"):
            continue
        try:
            cgroup = Path(f"/proc/{proc.pid}/cgroup").read_text()
        except OSError:
            continue
        everywhere.append(proc.pid)
        if machine is None or machine in cgroup:
            candidates.append(proc.pid)
    # The lab's own supervisor does not name the host in the cgroup: then the one API
    # running on this machine is the one (never a guess between several).
    candidates = candidates or everywhere
    return candidates[0] if len(candidates) == 1 else None


@dataclass
class Sampler:
    """CPU % and RSS of one process (with `tree`, summed over it and its children), once a
    second, in a thread."""

    pid: int
    tree: bool = False
    samples: list[dict] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _procs(self, known: dict[int, psutil.Process]) -> list[psutil.Process]:
        root = known.setdefault(self.pid, psutil.Process(self.pid))
        found = [root, *root.children(recursive=True)] if self.tree else [root]
        # Keep one Process object per pid: cpu_percent measures since its previous call.
        return [known.setdefault(p.pid, p) for p in found]

    def run(self) -> None:
        known: dict[int, psutil.Process] = {}
        for p in self._procs(known):
            p.cpu_percent(None)
        while not self._stop.wait(1.0):
            cpu = rss = 0.0
            try:
                for p in self._procs(known):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        cpu += p.cpu_percent(None)
                        rss += p.memory_info().rss
            except psutil.Error:
                return
            self.samples.append({"t": time.time(), "cpu_percent": round(cpu, 1),
                                 "rss_mib": round(rss / 2**20, 1)})

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


def api_url(host: str) -> str:
    """A URL as given; `HOST` or `HOST:PORT` (port 8101 when none) otherwise, over HTTPS as
    the role deploys the console (issue #21; plain HTTP only as an explicit http:// URL)."""
    if "://" in host:
        return host
    has_port = ":" in host.rsplit("]", 1)[-1] and host.count(":") == 1 or "]:" in host
    return f"https://{host}" if has_port else f"https://{host}:8101"


def steady_rps(history_csv: Path, users: int) -> float | None:
    """Median of locust's per-second aggregate RPS once every user is running (the ramp-up
    and the last second are not the rate the API was asked to carry)."""
    if not history_csv.exists():
        return None
    with history_csv.open() as f:
        rates = [float(r["Requests/s"]) for r in csv.DictReader(f)
                 if r["Name"] == "Aggregated" and int(r["User Count"] or 0) >= users]
    # locust's rate is the mean of seconds t-12..t-2: skip the rows that still see the ramp
    # (all of them when the run is long enough, else the first two) and the last one.
    rates = rates[12:-1] if len(rates) > 20 else rates[2:-1]
    return round(statistics.median(rates), 1) if rates else None


def run_load(host: str, rps: int, duration: str, out_root: Path, users_rps: float = 1.0,
             api_pid: int | None = None, machine: str | None = None,
             processes: int | None = None) -> Path:
    seconds = parse_duration(duration)
    if rps < 1:
        raise OpsError("--rps: must be at least 1")
    locust = shutil.which("locust") or str(Path(sys.executable).with_name("locust"))
    if not Path(locust).exists():
        raise OpsError("locust is not installed in this venv (./ops installs the lock)")
    url = api_url(host)
    parsed = urlparse(url)
    out = out_root / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    pid = api_pid or find_api_pid(parsed.hostname or "", parsed.port or 80, machine)
    sampler = Sampler(pid) if pid else None
    users = max(1, int(rps / users_rps))
    workers = worker_processes(rps, processes)
    cmd = [locust, "-f", str(LOCUSTFILE), "--headless", "--host", url, "-u", str(users),
           "-r", str(min(users, 100 * workers)), "-t", f"{seconds}s", "--csv", str(out / "locust"),
           "--csv-full-history", "--only-summary", "--stop-timeout", "5",
           "--exit-code-on-error", "0"]
    if workers > 1:
        cmd += ["--processes", str(workers)]
    env = {**os.environ, "ARK_LOAD_PER_USER_RPS": str(users_rps)}
    if sampler:
        sampler.start()
    started = time.time()
    with (out / "locust.log").open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        generator = Sampler(proc.pid, tree=True)
        generator.start()
        code = proc.wait()
    if code != 0 or not (out / "locust_stats.csv").exists():
        raise OpsError(f"locust failed (exit {code}); see {out / 'locust.log'}")
    endpoints = summarise(out / "locust_stats.csv")
    total = endpoints.pop("Aggregated", {})
    steady = steady_rps(out / "locust_stats_history.csv", users)
    report = {"host": url, "target_rps": rps, "duration_s": seconds, "users": users,
              "locust_processes": workers,
              "started": datetime.fromtimestamp(started, UTC).isoformat(),
              "achieved_rps": total.get("rps"), "achieved_rps_steady": steady,
              "reached_target": steady is not None and steady >= 0.98 * rps,
              "p50_ms": total.get("p50_ms"),
              "p95_ms": total.get("p95_ms"), "p99_ms": total.get("p99_ms"),
              "error_rate": total.get("error_rate"), "endpoints": endpoints,
              "load_generator": generator.stop(),
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
             f"({r['users']} users, {r.get('locust_processes', 1)} locust process(es)): "
             f"achieved {r['achieved_rps']} RPS over the run, "
             f"{r.get('achieved_rps_steady')} RPS steady "
             f"({'target reached' if r.get('reached_target') else 'target NOT reached'}), "
             f"p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, p99 {r['p99_ms']} ms, "
             f"error rate {r['error_rate']}", "",
             "| endpoint | requests | RPS | p50 | p95 | p99 | errors |",
             "|---|---|---|---|---|---|---|"]
    for name, e in r["endpoints"].items():
        lines.append(f"| {name} | {e['requests']} | {e['rps']} | {e['p50_ms']} | {e['p95_ms']} "
                     f"| {e['p99_ms']} | {e['error_rate']} |")
    lines += ["", f"API process: {json.dumps(r['api_process'])}",
              f"Load generator (locust, all processes): {json.dumps(r.get('load_generator'))}",
              ""]
    return "\n".join(lines)


def run_load_wrk(host: str, duration: str, out_root: Path, *, connections: int = 50,
                 threads: int = 1, rate: int = 0, chatter: int = 0,
                 api_pid: int | None = None, machine: str | None = None) -> Path:
    """`invoke load --generator wrk`: the signed-in read mix of mix.py, driven by wrk."""
    from ark_ops.load import wrk

    seconds = parse_duration(duration)
    if connections < 1 or threads < 1 or threads > connections:
        raise OpsError("--connections and --threads: at least 1, threads <= connections")
    url = api_url(host).rstrip("/")
    parsed = urlparse(url)
    user, password = wrk.credentials()
    pid = api_pid or find_api_pid(parsed.hostname or "", parsed.port or 80, machine)
    out = out_root / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    session, doc = wrk.sign_in(url, user, password)
    del password
    started = time.time()
    try:
        result = wrk.measure(url, session, doc, seconds=seconds, connections=connections,
                             threads=threads, rate=rate, api_pid=pid, chatter=chatter)
    finally:
        wrk.sign_out(url, session)
    report = {"host": url, "generator": "wrk", "user": user,
              "started": datetime.fromtimestamp(started, UTC).isoformat(),
              "load_average": [round(x, 2) for x in os.getloadavg()], **result}
    if report["api"] is None:
        report["api_error"] = "API process not found; pass --api-pid"
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(wrk.render(report))
    return out
