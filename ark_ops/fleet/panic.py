"""invoke panic / invoke recover: stop every ARK process on every host now (REC_01).

Both are audited here (SEC_03), so a task, a benchmark and a test calling them each leave a
record on the control node and on every host reached.
"""

from __future__ import annotations

import time

from ark_ops.errors import OpsError
from ark_ops.fleet.audit import AuditIdentity, audit_action
from ark_ops.fleet.ssh import (
    FleetHost,
    HostOutcome,
    inventory_hosts,
    remote_script,
    run_as_root,
    run_everywhere,
)
from ark_ops.inventories import resolve_inventory
from ark_runtime.host import panic as host_panic
from ark_runtime.host.panic import PanicReport, parse_panic_output


def panic_command(who: str) -> str:
    """The host-side panic (ark_runtime/host/panic.sh, which the console's
    /api/admin/panic runs too) after the shared prelude, as one command line."""
    return remote_script(host_panic.SCRIPT_NAME, who, body=host_panic.script_text())


def _panic_step(identity: AuditIdentity):
    def step(conn, host: FleetHost) -> PanicReport:
        result = run_as_root(conn, host, panic_command(identity.who), timeout=30)
        report = parse_panic_output(result.stdout)
        if report.remaining != 0:
            raise OpsError(f"{report.remaining} ARK process(es) still running after SIGKILL "
                           f"(exit {result.exited}): {result.stderr.strip()[-300:]}")
        return report

    return step


def panic(inventory: str | None = None, limit: str | None = None,
          log=print) -> tuple[list[HostOutcome], float]:
    """SIGKILL every ARK process on every host at once; (per-host outcomes, wall seconds)."""
    with audit_action("panic", {}, inventory, limit) as rec:
        outcomes, wall = _panic(inventory, limit, log, rec.identity)
        rec.outcomes(outcomes)
    return outcomes, wall


def _panic(inventory: str | None, limit: str | None, log,
           identity: AuditIdentity) -> tuple[list[HostOutcome], float]:
    started = time.monotonic()
    inv = resolve_inventory(inventory, log, bring_up=False)
    outcomes = run_everywhere(inventory_hosts(inv, limit), _panic_step(identity))
    wall = time.monotonic() - started
    for o in outcomes:
        if o.ok:
            r = o.value
            log(f"  {o.host:<16} KILLED  {len(r.killed)} unit(s) in {o.seconds:.2f}s "
                f"({', '.join(r.killed) or 'none running'})")
        else:
            log(f"  {o.host:<16} FAILED  after {o.seconds:.2f}s: {o.error}")
    return outcomes, wall


def _recover_step(identity: AuditIdentity):
    def step(conn, host: FleetHost) -> str:
        result = run_as_root(conn, host, remote_script("recover.sh", identity.who,
                                                       identity.correlation_id), timeout=300)
        if result.exited != 0:
            raise OpsError((result.stderr or result.stdout).strip()[-600:]
                           or f"exit {result.exited}")
        return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "ok"

    return step


def recover(inventory: str | None = None, limit: str | None = None,
            log=print) -> list[HostOutcome]:
    """Clear the panic on every host (cold-start checks first) and start ARK; audited."""
    with audit_action("recover", {}, inventory, limit) as rec:
        inv = resolve_inventory(inventory, log, bring_up=False)
        outcomes = run_everywhere(inventory_hosts(inv, limit), _recover_step(rec.identity))
        rec.outcomes(outcomes)
    for o in outcomes:
        state = "RECOVERED" if o.ok else "FAILED"
        log(f"  {o.host:<16} {state:<9} in {o.seconds:.1f}s: {o.value if o.ok else o.error}")
    return outcomes

