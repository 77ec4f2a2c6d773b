"""Per unit: state, restarts, CPU and RSS; per agent: the age of its last heartbeat.

A heartbeat is the agent's WATCHDOG=1 ping, which it sends from its work loop (a wedged
loop stops pinging). systemd records the time of the last one (WatchdogTimestampMonotonic),
so the figure needs nothing from the agent itself. One `systemctl show` per scrape.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterable, Sequence

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ark_runtime import settings
from ark_runtime.metrics.base import Source
from ark_runtime.systemd import parse_show

PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "MainPID", "NRestarts",
              "WatchdogTimestampMonotonic")


def systemctl_show(units: Sequence[str]) -> str:
    # Not our notify socket: systemd would log every message from a PID that is not main.
    env = settings.child_environment(drop=("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC"))
    proc = subprocess.run(
        ["systemctl", "show", "--property=" + ",".join(PROPERTIES), "--", *units],
        capture_output=True, text=True, timeout=10, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"systemctl show failed: {proc.stderr.strip()[:200]}")
    return proc.stdout


def agent_of(unit: str) -> str | None:
    if unit.startswith("ark-agent@") and unit.endswith(".service"):
        return unit[len("ark-agent@"):-len(".service")]
    return None


def process_usage(pid: int) -> tuple[float, float] | None:
    """(CPU seconds, RSS bytes) of the unit's main process and its children."""
    try:
        main = psutil.Process(pid)
        procs = [main, *main.children(recursive=True)]
        cpu = rss = 0.0
        for p in procs:
            with p.oneshot():
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
        return cpu, rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class UnitsSource(Source):
    name = "units"

    def __init__(self, units: Sequence[str],
                 show: Callable[[Sequence[str]], str] = systemctl_show,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.units = list(units)
        self.show = show
        self.monotonic = monotonic

    def metrics(self) -> Iterable[Metric]:
        active = GaugeMetricFamily("ark_unit_active", "1 when the unit is active",
                                   labels=["unit", "state"])
        restarts = CounterMetricFamily("ark_unit_restarts", "Automatic restarts by systemd",
                                       labels=["unit"])
        cpu = CounterMetricFamily("ark_unit_cpu_seconds", "CPU time of the unit's processes",
                                  labels=["unit"])
        rss = GaugeMetricFamily("ark_unit_rss_bytes", "Resident memory of the unit's processes",
                                labels=["unit"])
        beat = GaugeMetricFamily("ark_agent_heartbeat_age_seconds",
                                 "Seconds since the agent's last watchdog ping",
                                 labels=["agent"])
        now_us = self.monotonic() * 1e6
        for unit in parse_show(self.show(self.units)):
            name = unit.get("Id", "?")
            state = unit.get("ActiveState", "unknown")
            active.add_metric([name, f"{state}/{unit.get('SubState', '')}"],
                              1.0 if state == "active" else 0.0)
            if unit.get("NRestarts", "").isdigit():
                restarts.add_metric([name], float(unit["NRestarts"]))
            pid = int(unit.get("MainPID") or 0)
            usage = process_usage(pid) if pid > 0 else None
            if usage:
                cpu.add_metric([name], usage[0])
                rss.add_metric([name], usage[1])
            agent = agent_of(name)
            stamp = int(unit.get("WatchdogTimestampMonotonic") or 0)
            if agent and stamp > 0 and state == "active":
                beat.add_metric([agent], max(0.0, (now_us - stamp) / 1e6))
        yield from (active, restarts, cpu, rss, beat)
