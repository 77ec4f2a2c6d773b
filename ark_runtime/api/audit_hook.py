"""The console's one door to the audit trail (SEC_03): every login and admin action calls
`record()`.

A record is one JSON object sent to journald over its native protocol
(`/run/systemd/journal/socket`, `$ARK_AUDIT_JOURNAL_SOCKET`) as MESSAGE, marked with the field
`ARK_CONSOLE_AUDIT=1`. Root's `ark audit ingest --follow` (ark-audit-ingest.service) reads
them with journalctl and appends them to the root-only, tamper-evident chain
(ark_runtime/host/audit/ingest.py).

Why the journal and not a file (issue 21, vuln 6): the API and the agents both run as user ark,
so a spool file the API can write, every agent can write too (forged records) and truncate
(erased ones). journald stamps each entry with fields a sender cannot set (`_UID` from the
kernel's SCM_CREDENTIALS, `_SYSTEMD_UNIT` and `_SYSTEMD_INVOCATION_ID` from the sender's
cgroup), and user ark cannot delete journal files. The ingester believes only entries stamped
`_SYSTEMD_UNIT=ark-api.service` with the API user's `_UID`.

Each record carries `seq`, counting from 1 in each API process: the ingester sees a gap (a
record that never reached the journal, or one journald dropped or vacuumed) and a replay, and
says so in the chain. The native protocol (not a line on stdout) so that no request can
produce an audit entry by getting a crafted line into the API's log: stdout lines never carry
the marker field.

`ARK_AUDIT_SINK=stderr` (a container, where there is no journald and no root ingester): the
same JSON on stderr, one line per record, for whoever collects the container's logs.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ark_runtime import redact as shared_redact
from ark_runtime import settings
from ark_runtime.host import layout

MARK_FIELD = "ARK_CONSOLE_AUDIT"
IDENTIFIER = "ark-api-audit"
SEND_TIMEOUT_S = 5.0  # journald stalled this long: the action fails rather than go unrecorded

_lock = threading.Lock()
_seq = 0
_sock: socket.socket | None = None


def redact(args: dict[str, Any]) -> dict[str, Any]:
    """Secrets never reach the audit trail: any argument named like one is masked, and so is
    a `name=value` secret inside a value (ark_runtime/redact.py)."""
    return shared_redact.redact(args, max_text=None)


def native_datagram(fields: dict[str, bytes]) -> bytes:
    """journald's native protocol: NAME=value lines, or, for a value that may hold a newline,
    NAME, a newline, its length as 64-bit little-endian, the value and a newline."""
    out = bytearray()
    for name, value in fields.items():
        if b"\n" in value or name == "MESSAGE":
            out += name.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
        else:
            out += name.encode() + b"=" + value + b"\n"
    return bytes(out)


def _send_journal(message: bytes, seq: int, path: Path) -> None:
    global _sock
    if _sock is None:
        _sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        _sock.settimeout(SEND_TIMEOUT_S)
    data = native_datagram({"MESSAGE": message, "PRIORITY": b"6",
                            "SYSLOG_IDENTIFIER": IDENTIFIER.encode(), MARK_FIELD: b"1",
                            "ARK_AUDIT_SEQ": str(seq).encode()})
    try:
        _sock.sendto(data, str(path))
    except OSError:
        _sock.close()
        _sock = None
        raise


def record(who: str, action: str, args: dict[str, Any] | None, result: str, *,
           detail: str = "", duration_ms: float | None = None,
           correlation_id: str | None = None) -> dict[str, Any]:
    """Send one audit record (who did what, with which arguments, and how it ended). Raises
    OSError when journald cannot take it: an admin action is not done unrecorded."""
    global _seq
    entry: dict[str, Any] = {
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
    sink = settings.get("ARK_AUDIT_SINK")
    with _lock:  # one number per record, sent in number order
        _seq += 1
        entry["seq"] = _seq
        message = json.dumps(entry, sort_keys=True).encode()
        if sink == "stderr":
            sys.stderr.write(f"{MARK_FIELD} {message.decode()}\n")
            sys.stderr.flush()
        else:
            try:
                _send_journal(message, _seq, layout.resolve().audit_journal_socket)
            except OSError:
                _seq -= 1  # never sent: the next record takes this number, no false gap
                raise
    return entry
