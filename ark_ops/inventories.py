"""Which inventory a command acts on.

Shared by every control-side command (deploy, verify, panic, fleet, dr) so that the ones that
only talk to hosts do not import the deploy and wheelhouse machinery.
"""

from __future__ import annotations

from pathlib import Path

from ark_ops.errors import OpsError


def lab_inventory(log=print, bring_up: bool = True) -> Path:
    """The lab's inventory, bringing the lab up first when no host is running."""
    from ark_ops.lab.config import LabPaths

    inv = LabPaths.default().inventory / "hosts.yml"
    if not bring_up:
        if not inv.exists():
            raise OpsError("the lab is down (no inventory/lab/hosts.yml): nothing to act on; "
                           "pass --inventory for other hosts")
        return inv
    from ark_ops.lab import lab

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
