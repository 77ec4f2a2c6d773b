"""`invoke trace ID` (AGENT_03): one flow reconstructed across every host of the fleet.

Each host is asked (over SSH, in parallel) for the log lines that mention the id, rotated
and compressed generations included (`zgrep -F`). The lines are laid out as one directory
per host and handed to `ark_runtime.trace.collect`, the same parser and ordering `ark trace`
uses on one host. When the id is a message id, a second round fetches every line of its
correlation id. Hops are printed in time order with host, agent, event and the time since
the previous hop.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from ark_ops.fleet.logs import LOG_DIR, UsageError, ssh_argv, ssh_input
from ark_ops.fleet.ssh import FleetHost
from ark_runtime.exitcodes import ExitCode
from ark_runtime.trace import Hop, _when, collect
from ark_runtime.validators import ValidationError, validate_id

Runner = Callable[..., subprocess.CompletedProcess]


def grep_command(needle: str, log_dir: str = LOG_DIR) -> str:
    # zgrep reads plain and .gz alike; exit 1 (no match) is not an error.
    return (f"zgrep -h -F -e {shlex.quote(needle)} -- {log_dir}/*.log* 2>/dev/null; "
            "[ $? -le 1 ]")


def fetch(hosts: list[FleetHost], needle: str, workdir: Path, run: Runner = subprocess.run
          ) -> tuple[list[Path], dict[str, str]]:
    """Matching lines of every host into workdir/<host>/match.log. Returns the host
    directories and {host: error} for hosts that could not be read."""

    def one(host: FleetHost) -> tuple[FleetHost, subprocess.CompletedProcess | Exception]:
        try:
            return host, run(ssh_argv(host, grep_command(needle)), capture_output=True,
                             text=True, input=ssh_input(host), timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return host, exc

    dirs, errors = [], {}
    with ThreadPoolExecutor(max_workers=min(32, len(hosts) or 1)) as pool:
        results = list(pool.map(one, hosts))
    for host, res in results:
        if isinstance(res, Exception) or res.returncode != 0:
            detail = str(res) if isinstance(res, Exception) else \
                (res.stderr.strip()[-200:] or f"exit {res.returncode}")
            errors[host.name] = host.become.scrub(detail)
            continue
        d = workdir / host.name
        d.mkdir(parents=True, exist_ok=True)
        (d / "match.log").write_text(res.stdout)
        dirs.append(d)
    return dirs, errors


def reconstruct(hosts: list[FleetHost], ident: str, run: Runner = subprocess.run
                ) -> tuple[str | None, list[Hop], dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="ark-trace-") as tmp:
        dirs, errors = fetch(hosts, ident, Path(tmp) / "1", run)
        correlation, hops = collect(ident, dirs)
        if correlation is not None and correlation != ident:
            dirs, more = fetch(hosts, correlation, Path(tmp) / "2", run)
            errors.update(more)
            correlation, hops = collect(correlation, dirs)
    return correlation, hops, errors


def render(correlation: str, hops: list[Hop], out: TextIO, as_json: bool = False) -> None:
    print(f"trace {correlation}: {len(hops)} hops", file=out)
    previous = None
    for hop in hops:
        when = _when(hop)
        gap_ms = (when - previous).total_seconds() * 1000 if previous else 0.0
        previous = when
        host, _, agent = hop.source.partition("/")
        if as_json:
            print(json.dumps({"ts": hop.ts, "host": host, "agent": agent, "event": hop.event,
                              "since_previous_ms": round(gap_ms, 3),
                              "message_id": hop.message_id, "detail": hop.detail}), file=out)
        else:
            print(f"{hop.ts}  {host:<14} {agent:<6} {hop.event:<14} +{gap_ms:9.1f} ms  "
                  f"{hop.detail}", file=out)


def run(ident: str, inventory: str | None, limit: str | None, as_json: bool = False,
        out: TextIO = sys.stdout) -> int:
    from ark_ops.fleet.ssh import inventory_hosts
    from ark_ops.inventories import resolve_inventory

    try:
        ident = validate_id(ident, "trace id")
    except ValidationError as exc:
        raise UsageError(str(exc)) from None
    hosts = inventory_hosts(resolve_inventory(inventory, bring_up=False), limit)
    correlation, hops, errors = reconstruct(hosts, ident)
    for name, err in sorted(errors.items()):
        print(f"trace: {name} could not be read ({err}); its hops are missing",
              file=sys.stderr)
    if correlation is None:
        print(f"trace: no log line on {len(hosts) - len(errors)} host(s) mentions {ident}",
              file=sys.stderr)
        return ExitCode.FAILURE
    render(correlation, hops, out, as_json)
    return ExitCode.OK
