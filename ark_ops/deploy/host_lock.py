"""One deploy per host at a time, whichever checkout or operator starts it (INFRA_02).

The control node's lock (ark_ops/inventories.py) lives in one checkout's inventory dir: a
second clone, or a colleague's laptop, never sees it. So a deploy also holds a kernel lock on
every target host for as long as it runs: one ssh session per host runs, as root,
`flock -n /run/lock/ark-deploy.lock` around a shell that waits on its stdin. Closing that
stdin (the deploy ended, however it ended) or losing the session (the control node died)
ends the shell and the kernel drops the lock — nothing to clean up, never a stale lock. A host
whose lock is held refuses the deploy, naming the holder written in the lock file.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ark_ops.errors import LockedError, OpsError
from ark_ops.paths import REPO_ROOT

LOCK_FILE = "/run/lock/ark-deploy.lock"
TAKEN = "ARK-DEPLOY-LOCK-TAKEN"
HELD = "ARK-DEPLOY-LOCK-HELD-BY:"
TAKE_TIMEOUT = 30
SSH_FAILED = 255  # ssh's own exit code: no connection, refused key, unknown host key


class HostUnreachable(OpsError):
    """The host could not be reached to take its lock: the deploy reports it as Ansible does
    (UNREACHABLE), and the other hosts go ahead, locked."""


def holder_text() -> str:
    """Who holds the lock (no secret): user, control node, checkout, pid, since when."""
    return (f"{getpass.getuser()}@{socket.gethostname()}:{REPO_ROOT} pid {os.getpid()} "
            f"since {time.strftime('%F %T %Z')}")


def lock_script(holder: str, lock_file: str = LOCK_FILE) -> str:
    """Runs as root on the host: take the lock or say who has it (exit 75)."""
    q = shlex.quote
    return (f"exec 9>>{q(lock_file)} && "
            f"if flock -n 9; then printf '%s\\n' {q(holder)} > {q(lock_file)}; "
            f"echo {TAKEN}; read _ark_release || true; "
            f"else printf '{HELD}%s\\n' \"$(head -c 300 {q(lock_file)})\"; exit 75; fi")


class HostLock:
    """The lock on one host, held while the ssh session lives."""

    def __init__(self, host, holder: str):
        from ark_ops.fleet.logs import ssh_argv, ssh_input

        self.host = host
        self.proc = subprocess.Popen(
            ssh_argv(host, f"sh -c {shlex.quote(lock_script(holder))}"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None
        self.proc.stdin.write(ssh_input(host))  # the become password line, if any
        self.proc.stdin.flush()

    def wait_taken(self, timeout: float = TAKE_TIMEOUT) -> None:
        """Return once held; LockedError when another deploy holds it; OpsError otherwise."""
        import selectors

        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = ""
        if sel.select(timeout):
            line = self.proc.stdout.readline().strip()
        if line == TAKEN:
            return
        self.release()
        if line.startswith(HELD):
            raise LockedError(f"{self.host.name}: another deploy holds this host's lock "
                              f"({line[len(HELD):].strip() or 'unknown'}); wait for it to "
                              f"finish — the lock ({LOCK_FILE}) is released when it ends")
        err = (self.proc.stderr.read() if self.proc.stderr else "").strip()
        if self.proc.returncode == SSH_FAILED:
            raise HostUnreachable(f"{self.host.name}: not reachable over ssh, so not locked: "
                                  + self.host.become.scrub(err[-200:] or "no answer"))
        raise OpsError(f"{self.host.name}: could not take the deploy lock ({LOCK_FILE}): "
                       + self.host.become.scrub(err[-300:] or line or "no answer"))

    def release(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # `read` sees EOF: the shell ends, the lock goes
                self.proc.wait(timeout=15)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                self.proc.kill()
                self.proc.wait()


@contextmanager
def held_on_hosts(inventory: Path, limit: str | None, log=print) -> Iterator[list[str]]:
    """The deploy lock on every target host for the duration of the block; refused (exit 75)
    when any host's lock is held by another deploy, before anything changes."""
    from ark_ops.fleet.ssh import inventory_hosts

    hosts = inventory_hosts(inventory, limit)
    holder = holder_text()
    with ExitStack() as stack:
        locks = [HostLock(h, holder) for h in hosts]
        for lock in locks:
            stack.callback(lock.release)
        held = []
        for lock in locks:
            try:
                lock.wait_taken()
                held.append(lock.host.name)
            except HostUnreachable as exc:
                log(str(exc))
        yield held
