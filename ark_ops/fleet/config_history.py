"""`invoke config.history|diff|rollback` (GOV_02): each host's config versions, over SSH.

Versions are numbered per host (a host joins the fleet later, or a --limit deploy changes
only some hosts), so history lists them per host and diff/rollback name a host's numbers.
"""

from __future__ import annotations

import json
from typing import Any

from ark_ops.errors import OpsError
from ark_ops.fleet.audit import ARK, REMOTE_TIMEOUT, audit_action, inventory_file
from ark_ops.fleet.ssh import FleetHost, HostOutcome, inventory_hosts, run_as_root, run_everywhere


def _hosts(inventory: str | None, limit: str | None) -> list[FleetHost]:
    inv = inventory_file(inventory)
    if not inv.exists():
        raise OpsError(f"no inventory at {inv}: pass --inventory, or bring the lab up")
    return inventory_hosts(inv, limit)


def _run(argv: list[str], env: dict[str, str] | None = None, timeout: int = REMOTE_TIMEOUT):
    def step(conn, host: FleetHost) -> str:
        full = (["env", *(f"{k}={v}" for k, v in (env or {}).items())] if env else []) + argv
        res = run_as_root(conn, host, full, timeout=timeout)
        if res.exited != 0:
            raise OpsError((res.stderr or res.stdout).strip()[-600:] or f"exit {res.exited}")
        return res.stdout

    return step


def history(inventory: str | None = None, limit: str | None = None, last: int | None = None,
            as_json: bool = False, log=print) -> list[HostOutcome]:
    argv = [ARK, "config", "list", "--json"] + (["--limit", str(last)] if last else [])
    outcomes = run_everywhere(_hosts(inventory, limit), _run(argv))
    for o in sorted(outcomes, key=lambda o: o.host):
        if not o.ok:
            log(f"{o.host}: not read: {o.error}")
            continue
        rows = [json.loads(x) for x in o.value.splitlines() if x.strip()]
        if as_json:
            for r in rows:
                log(json.dumps({"host": o.host, **r}, sort_keys=True))
            continue
        log(f"{o.host}:" + ("" if rows else " no config versions recorded yet"))
        for r in rows:
            log(f"  {r['version']:>4}  {r['created_at']}  {r['who']:<20} "
                f"{(r['commit'] or '?')[:12]:<12} {r['files']:>3} files  {r['reason']}")
    return outcomes


def diff(a: int, b: int, inventory: str | None = None, host: str | None = None,
         log=print) -> list[HostOutcome]:
    outcomes = run_everywhere(_hosts(inventory, host),
                              _run([ARK, "config", "diff", str(a), str(b)]))
    for o in sorted(outcomes, key=lambda o: o.host):
        if len(outcomes) > 1:
            log(f"=== {o.host}")
        log(o.value.rstrip("\n") if o.ok else f"{o.host}: {o.error}")
    return outcomes


def rollback(to: int, inventory: str | None = None, limit: str | None = None,
             log=print) -> list[HostOutcome]:
    """`ark config rollback N` on every targeted host, in parallel; audited (SEC_03)
    whoever calls it, each host's own record under the same correlation id."""
    with audit_action("config.rollback", {"to": to}, inventory, limit) as rec:
        argv = [ARK, "config", "rollback", str(to), "--json", "--who", rec.identity.who]
        outcomes = run_everywhere(_hosts(inventory, limit),
                                  _run(argv, rec.identity.env(), timeout=600))
        rec.outcomes(outcomes)
    for o in sorted(outcomes, key=lambda o: o.host):
        if o.ok:
            doc: dict[str, Any] = json.loads(o.value.strip().splitlines()[-1])
            log(f"  {o.host:<16} ROLLED BACK to {to} in {o.seconds:.1f}s (now version "
                f"{doc['new_version']}): {len(doc['changed'])} file(s), venv "
                f"{'switched' if doc['venv_changed'] else 'unchanged'}, restarted "
                f"{', '.join(doc['restarted']) or 'nothing'}")
            for n in doc["notes"]:
                log(f"  {'':<16} note: {n}")
        else:
            log(f"  {o.host:<16} FAILED after {o.seconds:.1f}s: {o.error}")
    return outcomes

