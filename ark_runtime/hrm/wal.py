"""WAL checkpoints off HRM's decision path (issue #12, paced latency).

SQLite checkpoints a WAL database from inside whichever commit pushes the log past
`wal_autocheckpoint` pages (1,000 by default): that commit then copies the whole log into the
database file and fsyncs both, which on a busy disk stalled HRM for 100-200 ms every few
seconds, and every decision queued behind it (paced p99 emit->decision 120-270 ms).

`Checkpointer` runs PASSIVE checkpoints from its own connection in a daemon thread instead
(sqlite3 releases the GIL while it works). A PASSIVE checkpoint takes no write lock: HRM keeps
committing while it copies. Durability is unchanged: every HRM commit is still fsync'd in the
WAL (synchronous=FULL) before its message is acked; a checkpoint only moves committed pages
into the main file. HRM's own connection keeps a large automatic checkpoint as a backstop,
so the log stays bounded even if this thread falls behind or dies.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

# HRM's own connection checkpoints only past this many WAL pages (4 KiB each, ~40 MiB):
# never in normal running, where the thread keeps the log far shorter.
BACKSTOP_PAGES = 10_000

log = logging.getLogger("ark.hrm.wal")


class Checkpointer(threading.Thread):
    """PASSIVE-checkpoints the WAL of `path` every `every_s` seconds until stopped."""

    def __init__(self, path: Path, every_s: float = 1.0) -> None:
        super().__init__(name="wal-checkpoint", daemon=True)
        self.path = path
        self.every_s = every_s
        self.checkpoints = 0
        self._stopped_event = threading.Event()

    def run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            while not self._stopped_event.wait(self.every_s):
                self.checkpoint(db)
        finally:
            db.close()

    def checkpoint(self, db: sqlite3.Connection) -> None:
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # the backstop checkpoint still bounds the log
            log.warning("background WAL checkpoint failed: %s", exc,
                        extra={"event": "wal_checkpoint_failed"})

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped_event.set()
        if self.is_alive():
            self.join(timeout)
