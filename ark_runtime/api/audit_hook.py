"""The console's one door to the audit trail (SEC_03): every login and admin action calls
`record()`.

For now a record is one JSON line appended to `$ARK_AUDIT_DIR/api.jsonl` (default
`/var/log/ark/audit/`), opened O_APPEND with mode 0600. When the tamper-evident chain of the
governance work (`ark_runtime/host/audit.py`) lands, switch the body of `record()` to it: this
is the only place that needs to change.
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
    return layout.audit_dir(env)


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
