"""The console's one door to the audit trail (SEC_03): every login and admin action calls
`record()`.

A record is one JSON line appended (O_APPEND, mode 0600) to `api.jsonl` in the API's audit
spool, `$ARK_AUDIT_SPOOL_DIR` (default `/var/lib/ark/audit-spool/`). The API runs as user ark
and cannot write the root-only, tamper-evident chain (`ark_runtime/host/audit/log.py`); root's
`ark audit ingest` (started by ark-audit-ingest.path when the spool is not empty) claims the
file by renaming it and moves its records into the chain (ark_runtime/host/audit/ingest.py).
A write holds a shared flock and checks the file is still the spool's, so none lands in a
file the ingester has already claimed.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ark_runtime import redact as shared_redact
from ark_runtime.host import layout

_lock = threading.Lock()


def audit_dir(env: dict[str, str] | None = None) -> Path:
    """The API's spool (ark-writable, under the state dir): the API runs as user ark and
    cannot write the root-only audit chain (/var/log/ark/audit)."""
    return layout.resolve(env).audit_spool


def redact(args: dict[str, Any]) -> dict[str, Any]:
    """Secrets never reach the audit trail: any argument named like one is masked, and so is
    a `name=value` secret inside a value (ark_runtime/redact.py)."""
    return shared_redact.redact(args, max_text=None)


def record(who: str, action: str, args: dict[str, Any] | None, result: str, *,
           detail: str = "", duration_ms: float | None = None,
           correlation_id: str | None = None, directory: Path | None = None) -> dict[str, Any]:
    """Append one audit record (who did what, with which arguments, and how it ended)."""
    entry = {
        "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
        "who": who,
        "where": socket.gethostname(),
        "source": "api",
        "action": action,
        "args": redact(args or {}),
        "result": result,
        "detail": detail[:500],
        "duration_ms": None if duration_ms is None else round(duration_ms, 3),
        "correlation_id": correlation_id or str(uuid.uuid4()),
    }
    target = (directory or audit_dir()) / "api.jsonl"
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    with _lock:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _append(target, line)
    return entry


def _append(target: Path, line: bytes) -> None:
    """One O_APPEND write under a shared flock, into the file that is `target` right now: if
    the ingester renamed it away between our open and our lock, open the new one."""
    for _attempt in range(20):
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            mine = os.fstat(fd)
            try:
                now = os.stat(target, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                os.write(fd, line)
                return
        finally:
            os.close(fd)
    raise OSError(f"{target} kept being claimed while the API wrote to it")
