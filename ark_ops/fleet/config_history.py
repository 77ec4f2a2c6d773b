"""`invoke config.history|diff|rollback` (GOV_02): each host's config versions, over SSH.

Versions are numbered per host (a host joins the fleet later, or a --limit deploy changes
only some hosts), so history lists them per host and diff/rollback name a host's numbers.
A rollback to N over several hosts goes ahead only when N is the same deploy on each of them
(same correlation id, else same commit and lock); otherwise it is refused before any host
changes, naming what N is where (narrow it with --limit).
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


def _deploy_of(row: dict[str, Any]) -> tuple:
    """What a version is across hosts: the deploy run that recorded it."""
    if row.get("correlation_id") not in (None, "", "none"):  # the deploy's own id
        return ("deploy", row["correlation_id"])
    return ("commit", row.get("commit"), row.get("lock_sha256"))


def _describe(row: dict[str, Any] | None) -> str:
    if row is None:
        return "no such version"
    return (f"{row.get('created_at')} by {row.get('who')}, commit "
            f"{(row.get('commit') or '?')[:12]}, {row.get('reason') or 'no reason'}")


def meaning_problem(to: int, versions: dict[str, list[dict[str, Any]]]) -> str | None:
    """Why version `to` cannot be rolled back to on all these hosts at once, or None when it
    is the same deploy everywhere. `versions`: host -> its `ark config list --json` rows."""
    rows = {h: next((r for r in rs if r.get("version") == to), None)
            for h, rs in versions.items()}
    if len(rows) < 2 and all(rows.values()):
        return None
    kinds = {None if r is None else _deploy_of(r) for r in rows.values()}
    if len(kinds) == 1 and None not in kinds:
        return None
    where = "; ".join(f"{h}: {_describe(r)}" for h, r in sorted(rows.items()))
    return (f"config version {to} is not the same deploy on every host ({where}): versions "
            f"are numbered per host; roll back one host at a time with --limit HOST "
            f"(see `invoke config.history`)")


def rollback(to: int, inventory: str | None = None, limit: str | None = None,
             log=print) -> list[HostOutcome]:
    """`ark config rollback N` on every targeted host, in parallel, once N is known to be the
    same deploy on each (else refused before any host changes); audited (SEC_03) whoever
    calls it, each host's own record under the same correlation id."""
    with audit_action("config.rollback", {"to": to}, inventory, limit) as rec:
        hosts = _hosts(inventory, limit)
        listed = run_everywhere(hosts, _run([ARK, "config", "list", "--json"]))
        unread = [o.host for o in listed if not o.ok]
        if unread:  # every host fails: none is rolled back without knowing what N is
            outcomes = [o if not o.ok else HostOutcome(
                o.host, False, o.seconds, error="not rolled back: the config versions of "
                f"{', '.join(unread)} could not be read") for o in listed]
        else:
            problem = meaning_problem(to, {o.host: [json.loads(x) for x in o.value.splitlines()
                                                    if x.strip()] for o in listed})
            if problem:
                raise OpsError(problem)
            argv = [ARK, "config", "rollback", str(to), "--json", "--who", rec.identity.who]
            outcomes = run_everywhere(hosts, _run(argv, rec.identity.env(), timeout=600))
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

