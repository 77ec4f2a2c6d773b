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
        path = lab_inventory(log, bring_up)
    else:
        path = Path(inventory).resolve()
        if not path.exists():
            raise OpsError(f"inventory {inventory} does not exist")
    refuse_shadowed_vars(path if path.is_dir() else path.parent)
    return path


VARS_SUFFIXES = ("", ".yml", ".yaml", ".json")  # the order Ansible tries them in


def shadowed_vars_files(inventory_dir: Path) -> list[tuple[Path, Path]]:
    """(read, ignored) pairs in group_vars/ and host_vars/: Ansible takes the first of
    NAME, NAME.yml, NAME.yaml, NAME.json that exists and silently skips the others."""
    pairs = []
    for kind in ("group_vars", "host_vars"):
        d = inventory_dir / kind
        if not d.is_dir():
            continue
        names = {p.name.removesuffix(p.suffix) if p.suffix in VARS_SUFFIXES else p.name
                 for p in d.iterdir() if not p.name.startswith(".")}
        for name in sorted(names):
            found = [d / (name + sfx) for sfx in VARS_SUFFIXES if (d / (name + sfx)).exists()]
            pairs += [(found[0], other) for other in found[1:]]
    return pairs


def refuse_shadowed_vars(inventory_dir: Path) -> None:
    if pairs := shadowed_vars_files(inventory_dir):
        read, ignored = pairs[0]
        raise OpsError(f"inventory: Ansible would read {read} and silently ignore {ignored}: "
                       "move its variables into one of them")
