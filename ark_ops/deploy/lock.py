"""One deploy per inventory at a time (INFRA_02): a kernel-held flock, never a pid file.

The kernel drops the lock when the holder exits, however it exits, so a crashed
deploy never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ark_ops.errors import LockedError


@contextmanager
def exclusive(lock_path: Path, what: str) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise LockedError(
                f"another {what} is running on this inventory ({holder}); wait for it to "
                f"finish — the lock ({lock_path}) is released when it exits"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%F %T')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock
