"""invoke deploy: wheelhouse on the control node, then playbooks/site.yml."""

from __future__ import annotations

import time

from ark_ops import wheelhouse
from ark_ops.ansible_run import PlaybookResult, run_playbook
from ark_ops.deploy_lock import exclusive
from ark_ops.inventories import REPO_ROOT, resolve_inventory

WHEELHOUSE = REPO_ROOT / "build" / "wheelhouse"


def deploy(inventory: str | None = None, limit: str | None = None, check: bool = False,
           echo: bool = True, log=print) -> PlaybookResult:
    """Every deploy is an audit record (SEC_03) on the control node and each target host,
    whoever calls it (the task, a test, a benchmark) and however it ends."""
    from ark_ops.audit import audit_action

    inv = resolve_inventory(inventory, log)
    inv_dir = inv if inv.is_dir() else inv.parent
    started = time.monotonic()
    with audit_action("deploy.check" if check else "deploy", {"check": check},
                      inventory, limit) as rec, exclusive(inv_dir / ".deploy.lock", "deploy"):
        wheelhouse.build(REPO_ROOT / "requirements.lock", WHEELHOUSE, log=log)
        result = run_playbook("site.yml", inv, limit=limit, check=check, echo=echo)
        rec.recap(result.recap)
    log(f"deploy finished in {time.monotonic() - started:.1f}s: "
        + ", ".join(f"{h} changed={n}" for h, n in sorted(result.changed.items())))
    return result
