"""invoke panic / invoke recover: stop every ARK process on every host now (REC_01)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ark_ops.errors import OpsError
from ark_ops.fleet.audit import actor
from ark_ops.fleet.ssh import (
    FleetHost,
    HostOutcome,
    inventory_hosts,
    remote_script,
    run_as_root,
    run_everywhere,
)
from ark_ops.inventories import resolve_inventory


@dataclass
class PanicReport:
    killed: list[str] = field(default_factory=list)
    remaining: int = -1
    host_ms: int = -1
    warnings: list[str] = field(default_factory=list)


def parse_panic_output(text: str) -> PanicReport:
    report = PanicReport()
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key == "killed":
            report.killed.append(rest)
        elif key == "remaining":
            report.remaining = int(rest)
        elif key == "elapsed_ms":
            report.host_ms = int(rest)
        elif key in ("warning:", "note:"):
            report.warnings.append(rest)
    return report


def _panic_step(conn, host: FleetHost) -> PanicReport:
    result = run_as_root(conn, host, remote_script("panic.sh", actor()), timeout=30)
    report = parse_panic_output(result.stdout)
    if report.remaining != 0:
        raise OpsError(f"{report.remaining} ARK process(es) still running after SIGKILL "
                       f"(exit {result.exited}): {result.stderr.strip()[-300:]}")
    return report


def panic(inventory: str | None = None, limit: str | None = None,
          log=print) -> tuple[list[HostOutcome], float]:
    started = time.monotonic()
    inv = resolve_inventory(inventory, log, bring_up=False)
    outcomes = run_everywhere(inventory_hosts(inv, limit), _panic_step)
    wall = time.monotonic() - started
    for o in outcomes:
        if o.ok:
            r = o.value
            log(f"  {o.host:<16} KILLED  {len(r.killed)} unit(s) in {o.seconds:.2f}s "
                f"({', '.join(r.killed) or 'none running'})")
        else:
            log(f"  {o.host:<16} FAILED  after {o.seconds:.2f}s: {o.error}")
    return outcomes, wall


def _recover_step(conn, host: FleetHost) -> str:
    correlation = os.environ.get("ARK_CORRELATION_ID", "")  # set by the audit hook
    result = run_as_root(conn, host, remote_script("recover.sh", actor(), correlation),
                         timeout=300)
    if result.exited != 0:
        raise OpsError((result.stderr or result.stdout).strip()[-600:] or f"exit {result.exited}")
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "ok"


def recover(inventory: str | None = None, limit: str | None = None,
            log=print) -> list[HostOutcome]:
    inv = resolve_inventory(inventory, log, bring_up=False)
    hosts = inventory_hosts(inv, limit)
    outcomes = run_everywhere(hosts, _recover_step)
    for o in outcomes:
        state = "RECOVERED" if o.ok else "FAILED"
        log(f"  {o.host:<16} {state:<9} in {o.seconds:.1f}s: {o.value if o.ok else o.error}")
    return outcomes

