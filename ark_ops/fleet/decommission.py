"""`invoke decommission --limit H`: take hosts out of the fleet for good.

In order, and stopping at the first failure: a DR bundle of each host is built and fetched
to the control node (what the host knew is kept: logs, snapshots, audit chain, config
history); then, on each host, ARK's units are stopped and disabled and its unit files,
trees (/opt/ark, /etc/ark, /var/lib/ark, /var/log/ark), helpers, drop-ins and users removed
(ark_ops/fleet/remote/decommission.sh), and what is left is checked. The task is audited (SEC_03).

Refused before anything happens: no --limit (never the whole fleet by accident), or a host
whose Redis another host that stays still uses (decommission those first, or point them at
another ark_redis host).
"""

from __future__ import annotations

from pathlib import Path

from ark_ops.errors import OpsError
from ark_ops.fleet.dr import dr_bundle
from ark_ops.fleet.ssh import (
    FleetHost,
    HostOutcome,
    inventory_hosts,
    remote_script,
    run_as_root,
    run_everywhere,
)
from ark_ops.placement import redis_server

STEP_TIMEOUT = 300


def inventory_groups(inventory: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({group: hosts}, {host: its ark_runtime_redis_server override}) of the inventory,
    vault secrets included (ark_ops.fleet.vault)."""
    from ansible.inventory.manager import InventoryManager
    from ansible.vars.manager import VariableManager

    from ark_ops.fleet import vault

    loader = vault.loader()
    inv = InventoryManager(loader=loader, sources=[str(inventory)])
    variables = VariableManager(loader=loader, inventory=inv)
    groups = {name: [h.name for h in g.get_hosts()] for name, g in inv.groups.items()}
    overrides = {}
    for host in inv.get_hosts("ark"):
        value = variables.get_vars(host=host).get("ark_runtime_redis_server")
        if isinstance(value, str) and value and "{{" not in value:
            overrides[host.name] = value
    return groups, overrides


def still_needed(leaving: list[str], groups: dict[str, list[str]],
                 overrides: dict[str, str]) -> list[str]:
    """Sentences for each leaving host whose Redis a staying host uses."""
    redis_hosts = groups.get("ark_redis", [])
    staying = [h for h in groups.get("ark", []) if h not in leaving]
    problems = []
    for host in leaving:
        users = [h for h in staying if redis_server(h, redis_hosts, overrides.get(h)) == host]
        if users:
            problems.append(f"{host} runs the Redis that {', '.join(sorted(users))} still "
                            "use: decommission those too, or point them at another ark_redis "
                            "host first (ark_runtime_redis_server)")
    return problems


def _step(groups: dict[str, list[str]]):
    def step(conn, host: FleetHost) -> list[str]:
        with_redis = "yes" if host.name in groups.get("ark_redis", []) else "no"
        with_monitoring = "yes" if host.name in groups.get("ark_monitoring", []) else "no"
        res = run_as_root(conn, host, remote_script("decommission.sh", with_redis,
                                                    with_monitoring), timeout=STEP_TIMEOUT)
        lines = res.stdout.splitlines()
        if res.exited != 0:
            raise OpsError("; ".join(line for line in lines if line.startswith("left:"))
                           or (res.stderr.strip()[-300:] or f"exit {res.exited}"))
        return [line.removeprefix("removed: ") for line in lines if line.startswith("removed:")]

    return step


def decommission(inventory: str | None, limit: str | None, out_dir: Path | None = None,
                 log=print) -> tuple[list[HostOutcome], list[HostOutcome]]:
    """(bundle outcomes, removal outcomes). Nothing is removed unless every bundle was
    fetched. Audited (SEC_03) on the control node whoever calls it; the hosts' own chains
    leave with them (they are in the bundles)."""
    from ark_ops.fleet.audit import audit_action, inventory_file

    if not limit:
        raise OpsError("decommission needs --limit naming the host(s) to take out")
    with audit_action("decommission", {"out": str(out_dir or "")}, inventory, limit) as rec:
        inv = inventory_file(inventory)
        hosts = inventory_hosts(inv, limit)
        groups, overrides = inventory_groups(inv)
        problems = still_needed([h.name for h in hosts], groups, overrides)
        if problems:
            raise OpsError("nothing was changed: " + "; ".join(problems))
        bundles = dr_bundle(inventory=str(inv), limit=limit, out_dir=out_dir, log=log)
        failed = [o for o in bundles if not o.ok]
        if failed or not bundles:
            raise OpsError("the DR bundle of " + ", ".join(o.host for o in failed) + " failed:"
                           " nothing was removed (a host is decommissioned only once its "
                           "bundle is on the control node)")
        removed = run_everywhere(hosts, _step(groups))
        rec.outcomes(removed)
        rec.hosts_gone = {o.host for o in removed if o.ok}
    for o in sorted(removed, key=lambda o: o.host):
        if o.ok:
            log(f"  {o.host:<16} decommissioned in {o.seconds:.1f}s: removed "
                f"{len(o.value)} item(s) (bundle kept: "
                f"{next(b.value.local for b in bundles if b.host == o.host)})")
        else:
            log(f"  {o.host:<16} FAILED after {o.seconds:.1f}s: {o.error}")
    log("remove the host(s) from the inventory, then `invoke deploy --inventory ...` so the "
        "remaining agents hosts re-deal the pipeline")
    return bundles, removed
