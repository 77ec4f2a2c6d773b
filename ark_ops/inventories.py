"""Which inventory a command acts on, and its lock.

Shared by every control-side command (deploy, verify, panic, fleet, dr) so that the ones that
only talk to hosts do not import the deploy and wheelhouse machinery.

One change per inventory at a time (INFRA_02): deploys, rolling upgrades and secret rotations
take the same kernel-held flock (`held`), never a pid file, so a rotation never interleaves
with a deploy rendering the same secrets. The kernel drops the lock when the holder exits,
however it exits, so a crashed run never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ark_ops.errors import LockedError, OpsError


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


LOCK_NAME = ".deploy.lock"  # in the inventory's directory; its name predates the rotations
_HOLDER = re.compile(r"(\S+) pid ")


@contextmanager
def exclusive(lock_path: Path, what: str) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            found = _HOLDER.match(holder)
            raise LockedError(
                f"another {found.group(1) if found else what} is running on this inventory "
                f"({holder}); wait for it to finish — the lock ({lock_path}) is released "
                "when it exits"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} pid {os.getpid()} since {time.strftime('%F %T')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def held(inv_dir: Path, what: str):
    """The inventory's lock, for `what` (deploy, upgrade, secrets.rotate)."""
    return exclusive(inv_dir / LOCK_NAME, what)
