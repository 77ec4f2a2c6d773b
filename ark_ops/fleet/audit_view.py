"""`invoke audit.show` and `invoke audit.verify`: the fleet's audit chains in one view."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ark_ops.errors import OpsError
from ark_ops.fleet.audit import (
    ARK,
    REMOTE_TIMEOUT,
    host_key_id,
    inventory_file,
    load_heads,
    state_dir,
)
from ark_ops.fleet.ssh import FleetHost, inventory_hosts, run_as_root, run_everywhere
from ark_runtime.host.audit.chain import iter_records, verify_dir
from ark_runtime.host.audit.cli import format_record, select


def _hosts(inventory: str | None, limit: str | None) -> list[FleetHost]:
    inv = inventory_file(inventory)
    if not inv.exists():
        raise OpsError(f"no inventory at {inv}" + ("" if inventory else
                       " (the lab is down): pass --inventory, or bring the lab up"))
    return inventory_hosts(inv, limit)


def _remote_show(filters: list[str]):
    def step(conn, host: FleetHost) -> list[dict[str, Any]]:
        res = run_as_root(conn, host, [ARK, "audit", "show", "--json", *filters],
                          timeout=REMOTE_TIMEOUT)
        if res.exited != 0:
            raise OpsError((res.stderr or res.stdout).strip()[-300:] or f"exit {res.exited}")
        return [json.loads(x) for x in res.stdout.splitlines() if x.strip()]

    return step


def show(inventory: str | None = None, limit: str | None = None, *, last: int | None = None,
         since: datetime | None = None, action: str | None = None, who: str | None = None,
         as_json: bool = False, log=print) -> int:
    """Every host's records and the control node's, merged in time order."""
    filters = []
    if since:
        filters += ["--since", since.isoformat()]
    if action:
        filters += ["--action", action]
    if who:
        filters += ["--who", who]
    if last:
        filters += ["--limit", str(last)]
    records = [{**r, "where": r.get("where") or "control"}
               for _f, r in iter_records(state_dir(inventory))]
    unreachable = []
    for o in run_everywhere(_hosts(inventory, limit), _remote_show(filters)):
        if o.ok:
            records += o.value
        else:
            unreachable.append(f"{o.host}: {o.error}")
    rows = select(records, since=since, action=action, who=who, limit=last)
    for r in rows:
        log(json.dumps(r, sort_keys=True) if as_json else format_record(r, host_column=True))
    for u in unreachable:
        log(f"warning: not read: {u}")
    return 1 if unreachable else 0


@dataclass
class ChainReport:
    where: str
    ok: bool
    text: str


def _remote_verify(heads: dict[str, dict[str, Any]]):
    def step(conn, host: FleetHost) -> ChainReport:
        argv = [ARK, "audit", "verify", "--json"]
        kept = heads.get(host.name)
        conn.open()  # the host key is known once connected
        note = ""
        if kept and kept.get("host_key") != host_key_id(conn):
            note = " (a new host key since the kept head: host rebuilt, not compared)"
            kept = None
        if kept:
            argv += ["--expect-seq", str(kept["seq"]), "--expect-hash", kept["hash"]]
        res = run_as_root(conn, host, argv, timeout=REMOTE_TIMEOUT)
        try:
            v = json.loads(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return ChainReport(host.name, False, (res.stderr or res.stdout).strip()[-300:]
                               or f"ark audit verify exit {res.exited}")
        if not v["ok"]:
            return ChainReport(host.name, False, f"BROKEN at {v['problem']}")
        against = f", reaches the kept head seq {kept['seq']}" if kept else ""
        return ChainReport(host.name, True, f"ok: {v['records']} records in {v['files']} "
                           f"file(s){against}{note}" + "".join(f"; {n}" for n in v["notes"]))

    return step


def verify(inventory: str | None = None, limit: str | None = None, log=print) -> int:
    """Each host's chain (against the head the control node kept) and the control chain;
    non-zero when any is broken or cannot be read."""
    reports = []
    v = verify_dir(state_dir(inventory))
    reports.append(ChainReport("control", v.ok, "ok: " + f"{v.records} records" if v.ok
                               else f"BROKEN at {v.problem}"))
    heads = load_heads(inventory)
    for o in run_everywhere(_hosts(inventory, limit), _remote_verify(heads)):
        reports.append(o.value if o.ok else ChainReport(o.host, False, f"not read: {o.error}"))
    for r in reports:
        log(f"  {r.where:<16} {r.text}")
    return 0 if all(r.ok for r in reports) else 1

