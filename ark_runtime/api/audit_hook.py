"""The console's one door to the audit trail (SEC_03): every login and admin action calls
`record()`.

A record is one JSON line appended (O_APPEND, mode 0600) to `api.jsonl` in the API's audit
spool, `$ARK_AUDIT_SPOOL_DIR` (default `/var/lib/ark/audit-spool/`). The API runs as user ark
and cannot write the root-only, tamper-evident chain (`ark_runtime/host/audit.py`); moving
spooled records into that chain from a root process is still to be built (issue #10), and
this is the only place that changes then.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ark_runtime.host import layout

_SECRET_WORDS = ("password", "secret", "token", "csrf", "cookie")
_lock = threading.Lock()


def audit_dir(env: dict[str, str] | None = None) -> Path:
    """The API's spool (ark-writable, under the state dir): the API runs as user ark and
    cannot write the root-only audit chain (/var/log/ark/audit)."""
    return layout.resolve(env).audit_spool


def redact(args: dict[str, Any]) -> dict[str, Any]:
    """Secrets never reach the audit trail: any argument named like one is masked."""
    return {k: ("***" if any(w in k.lower() for w in _SECRET_WORDS) else v)
            for k, v in args.items()}


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
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    return entry
