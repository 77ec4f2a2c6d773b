"""A stand-in for journald's native socket, for tests on a machine without systemd (this one):
it receives the API's datagrams on a real AF_UNIX socket, parses the native protocol the way
journald does, and stamps each entry the way journald would: `_UID`, `_GID` and `_PID` from
the kernel's SCM_CREDENTIALS, `_SYSTEMD_UNIT` and `_SYSTEMD_INVOCATION_ID` from what the test
says the sender is (journald reads those from the sender's cgroup; here there is none).
`json_lines()` gives what `journalctl -o json` would print. The real journald is used on the
lab (tests/e2e/test_console_lab.py)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any


def parse_native(data: bytes) -> dict[str, Any]:
    """journald's native protocol: NAME=value\\n, or NAME\\n<u64 le length><value>\\n. A name
    sent twice becomes a list, as journalctl prints it."""
    fields: dict[str, Any] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        head = data[i:nl]
        if b"=" in head:
            name, value = head.split(b"=", 1)
            i = nl + 1
        else:
            name = head
            (size,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            value = data[nl + 9:nl + 9 + size]
            if data[nl + 9 + size:nl + 10 + size] != b"\n":
                raise ValueError("binary field not followed by a newline")
            i = nl + 10 + size
        key = name.decode()
        if key.startswith("_"):
            continue  # journald drops trusted-looking fields a client sends
        text: Any = value.decode() if _utf8(value) else list(value)
        if key in fields:
            prev = fields[key]
            fields[key] = [*prev, text] if isinstance(prev, list) and key != "MESSAGE" \
                else [prev, text]
        else:
            fields[key] = text
    return fields


def _utf8(b: bytes) -> bool:
    try:
        b.decode()
    except UnicodeDecodeError:
        return False
    return True


class FakeJournald:
    def __init__(self, unit: str = "ark-api.service", invocation: str = "inv-test") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jr"))  # short: AF_UNIX paths are <108 bytes
        self.path = self.dir / "socket"
        self.unit, self.invocation = unit, invocation
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.bind(str(self.path))
        self._sock.setblocking(False)
        self.running = False
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> FakeJournald:
        self.running = True
        self._thread.start()
        return self

    def _loop(self) -> None:
        while self.running:
            select.select([self._sock], [], [], 0.1)
            self.drain()
        self._sock.close()

    def drain(self) -> None:
        """Take every datagram already queued (a sender's sendto has returned: it is here)."""
        creds_size = socket.CMSG_SPACE(struct.calcsize("3i"))
        with self._lock:
            while True:
                try:
                    data, anc, _flags, _addr = self._sock.recvmsg(1 << 20, creds_size)
                except (BlockingIOError, OSError):
                    return
                pid = uid = gid = -1
                for level, kind, payload in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                        pid, uid, gid = struct.unpack("3i", payload[:12])
                entry = parse_native(data)
                n = len(self.entries)
                entry.update(__CURSOR=f"s=test;i={n:x}", __SEQNUM=str(n + 1),
                             _UID=str(uid), _GID=str(gid), _PID=str(pid),
                             _SYSTEMD_UNIT=self.unit,
                             _SYSTEMD_INVOCATION_ID=self.invocation)
                self.entries.append(entry)

    def records(self) -> list[dict[str, Any]]:
        """The console's audit records (MESSAGE of every entry with the marker), in order."""
        self.drain()
        return [json.loads(e["MESSAGE"]) for e in self.entries
                if e.get("ARK_CONSOLE_AUDIT") == "1"]

    def json_lines(self) -> list[bytes]:
        self.drain()
        return [json.dumps(e).encode() for e in self.entries]

    def close(self) -> None:
        self.running = False
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self.dir)

