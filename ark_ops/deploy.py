"""invoke deploy: wheelhouse on the control node, then playbooks/site.yml."""

from __future__ import annotations

import time
from pathlib import Path

from ark_ops import wheelhouse
from ark_ops.ansible_run import PlaybookResult, run_playbook
from ark_ops.deploy_lock import exclusive
from ark_ops.errors import OpsError
from ark_ops.lab.config import REPO_ROOT, LabPaths

WHEELHOUSE = REPO_ROOT / "build" / "wheelhouse"


def lab_inventory(log=print, bring_up: bool = True) -> Path:
    """The lab's inventory, bringing the lab up first when no host is running."""
    from ark_ops.lab import lab

    inv = LabPaths.default().inventory / "hosts.yml"
    if not bring_up:
        if not inv.exists():
            raise OpsError("the lab is down (no inventory/lab/hosts.yml): nothing to act on; "
                           "pass --inventory for other hosts")
        return inv
    running = [s for s in lab.status() if s.running]
    if not running:
        log("no lab host is running: bringing the lab up (1 host)")
        lab.up(hosts=1, log=log)
    return inv


def resolve_inventory(inventory: str | None, log=print, bring_up: bool = True) -> Path:
    if not inventory:
        return lab_inventory(log, bring_up)
    path = Path(inventory).resolve()
    if not path.exists():
        raise OpsError(f"inventory {inventory} does not exist")
    return path


def deploy(inventory: str | None = None, limit: str | None = None, check: bool = False,
           echo: bool = True, log=print) -> PlaybookResult:
    inv = resolve_inventory(inventory, log)
    inv_dir = inv if inv.is_dir() else inv.parent
    started = time.monotonic()
    with exclusive(inv_dir / ".deploy.lock", "deploy"):
        wheelhouse.build(REPO_ROOT / "requirements.lock", WHEELHOUSE, log=log)
        result = run_playbook("site.yml", inv, limit=limit, check=check, echo=echo)
    log(f"deploy finished in {time.monotonic() - started:.1f}s: "
        + ", ".join(f"{h} changed={n}" for h, n in sorted(result.changed.items())))
    return result
