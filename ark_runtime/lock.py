"""INFRA_02: one instance per component, enforced by a kernel-held lock (flock(2)).

The kernel drops the lock when the holder's last file descriptor closes, which includes
SIGKILL and crashes, so a stale lock cannot exist. The pid written into the file is only for
the error message; it is never used to decide who holds the lock. The file is never unlinked:
unlinking a lock file lets two processes lock two different inodes of the same path.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ark_runtime.exitcodes import ExitCode
from ark_runtime.host import layout

# EX_TEMPFAIL from sysexits.h: "try again later" is exactly the situation (another instance
# is running). Units should list it in RestartPreventExitStatus= so systemd does not loop.
EXIT_LOCKED = int(ExitCode.TEMPFAIL)


class AlreadyRunning(RuntimeError):
    def __init__(self, component: str, path: Path, holder: str | None) -> None:
        who = f"pid {holder}" if holder else "another process"
        super().__init__(
            f"{component} is already running ({who} holds the lock {path}); "
            "refusing to start a second instance: stop the running one first"
        )
        self.component, self.path, self.holder = component, path, holder


class ComponentLock:
    """Holds the flock for as long as the object (and its fd) lives, or until release()."""

    def __init__(self, component: str, run_dir: Path) -> None:
        self.component = component
        self.path = run_dir / f"{component}.lock"
        self._fd: int | None = None

    def acquire(self) -> ComponentLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or None
            os.close(fd)
            raise AlreadyRunning(self.component, self.path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the fd is what releases the flock
            self._fd = None

    def __enter__(self) -> ComponentLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def run_dir(env: dict[str, str] | None = None) -> Path:
    """$ARK_RUN_DIR, else /run/ark (RuntimeDirectory=ark), else /var/lib/ark/locks."""
    return layout.run_dir(env)


def acquire(component: str, env: dict[str, str] | None = None) -> ComponentLock:
    return ComponentLock(component, run_dir(env)).acquire()
