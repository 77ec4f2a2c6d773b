"""`invoke risk` (AGENT_04): HRM's risk state as each ark_agents host reads it from its
pipeline's Redis (`ark hrm risk --json` over SSH, in parallel). Hosts that share a Redis show
the same state, whether or not HRM runs on them. Exit 1 when a breaker is tripped anywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from ark_ops.fleet.logs import ssh_argv, ssh_input
from ark_ops.fleet.ssh import FleetHost
from ark_runtime.exitcodes import ExitCode

Runner = Callable[..., subprocess.CompletedProcess]
# The units' environment (the Redis address and password) without putting it on a command
# line: root sources the env file on the host.
COMMAND = ("set -a; . /etc/ark/env/infrastructure.env; set +a; "
           "/opt/ark/venv/bin/ark hrm risk --json")


def read(hosts: list[FleetHost], run: Runner = subprocess.run) -> dict[str, dict[str, Any] | str]:
    """{host: risk state, or why it could not be read}."""

    def one(host: FleetHost) -> tuple[str, dict[str, Any] | str]:
        try:
            res = run(ssh_argv(host, COMMAND), capture_output=True, text=True,
                      input=ssh_input(host), timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return host.name, str(exc)
        if res.returncode not in (0, 1):  # 1: a breaker is tripped, still a state
            return host.name, host.become.scrub(res.stderr.strip()[-200:]
                                                or f"exit {res.returncode}")
        try:
            return host.name, json.loads(res.stdout)
        except ValueError:
            return host.name, "unreadable answer"

    with ThreadPoolExecutor(max_workers=min(32, len(hosts) or 1)) as pool:
        return dict(pool.map(one, hosts))


def _signed(value: float | None) -> str:
    """Open P&L, or "unknown" from an HRM older than the figure."""
    return "unknown" if value is None else f"{value:+.5f}"


def render(states: dict[str, dict[str, Any] | str], out: TextIO) -> bool:
    """Print each host's view; True when a breaker is tripped on any."""
    tripped_anywhere = False
    for name, state in sorted(states.items()):
        if isinstance(state, str):
            print(f"{name:<16} unknown: {state}", file=out)
            continue
        tripped = [b for b, v in state["breakers"].items() if v["tripped"]]
        tripped_anywhere |= bool(tripped)
        print(f"{name:<16} {'TRIPPED ' + ','.join(tripped) if tripped else 'ok':<24} "
              f"session {state['session']} daily {state['daily_pnl']:+.5f} realised "
              f"{state['realised_pnl']:+.5f} open pnl {_signed(state.get('open_pnl'))} "
              f"streak {state['loss_streak']} open "
              f"{state['positions_open']} closed {state['positions_closed']} exposure "
              f"{state['exposure']['total']:.3f}", file=out)
    return tripped_anywhere


def run(inventory: str | None, limit: str | None, out: TextIO = sys.stdout) -> int:
    from ark_ops.fleet.ssh import inventory_hosts
    from ark_ops.inventories import resolve_inventory

    hosts = inventory_hosts(resolve_inventory(inventory, bring_up=False), limit,
                            group="ark_agents")
    return ExitCode.FAILURE if render(read(hosts), out) else ExitCode.OK
