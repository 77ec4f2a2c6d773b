"""Log viewer backend: tail the agents' JSON log files and follow them by byte offset.

The page asks for the last N lines, then keeps asking with the cursor it got back
({file: offset}) for what was appended since. A rotated (shorter) file restarts at 0.

The last N lines of a file are parsed once per content: `TailCache` still reads the tail's
bytes on every request (one read of at most 256 bytes a line), but parses them only when they
differ from what it parsed last time for that file and N. Parsing was the cost (some 3 ms of
CPU for the console's 100 lines of every agent); comparing the bytes, not the file's
inode/size/mtime, keeps it exact through rename rotation, copytruncate and rewrites within
one timestamp tick. It holds at most BUDGET_BYTES of log text (least recently used out
first): the API runs under MemoryMax.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ark_runtime.logjson import log_dir
from ark_runtime.pipeline import LOG_SOURCES

SOURCES = LOG_SOURCES  # the agents of ark_runtime/pipeline.py, then the API
LEVELS = ("debug", "info", "warning", "error", "critical")
AGENT = re.compile(r"^[a-z]+$")
MAX_LINES = 500
READ_LIMIT = 1 << 20  # never read more than 1 MiB per file per request
BUDGET_BYTES = 4 << 20  # log text the tail cache holds at most (parsed: some 5-10x that)


def _tail(f: Any, size: int, lines: int) -> tuple[int, bytes]:
    """(offset, complete lines) of an open file of `size` bytes: the last `lines` lines from
    one read of the window (at most 256 bytes a line, 1 MiB), a half-written last line left
    for the next read."""
    start = max(size - min(READ_LIMIT, 256 * lines), 0)
    f.seek(start)
    chunk = f.read(size - start)
    size = start + len(chunk)  # shorter if truncated since the stat
    cut = chunk.split(b"\n")
    keep = b"\n".join(cut[-(lines + 1):])
    complete = keep[: keep.rfind(b"\n") + 1]  # leave a half-written line for next time
    return size - len(keep), complete


def _level(entry: dict[str, Any]) -> int:
    """LEVELS index of an entry's level; an unknown level passes every filter (-1)."""
    lvl = str(entry.get("level", "info")).lower()
    return LEVELS.index(lvl) if lvl in LEVELS else -1


class TailCache:
    """The parsed last-N lines of each log file, reused while those lines' bytes are the same
    (see the module's docstring). Thread-safe: `read` runs in worker threads."""

    def __init__(self, budget_bytes: int = BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self.held = 0
        self.parsed = 0  # tails parsed (misses), for tests
        self._lock = threading.Lock()
        self._tails: OrderedDict[tuple, tuple[int, bytes, list]] = OrderedDict()

    def clear(self) -> None:
        with self._lock:
            self._tails.clear()
            self.held = 0

    def get(self, path: Path, agent: str, lines: int) -> tuple[int, list]:
        """(cursor after the tail, [(level index, entry)...]) of `path`'s last `lines`
        complete lines, as `read` always made them."""
        with path.open("rb") as f:
            offset, complete = _tail(f, os.fstat(f.fileno()).st_size, lines)
        cursor = offset + len(complete)
        key = (str(path), agent, lines)
        with self._lock:
            hit = self._tails.get(key)
            if hit is not None and hit[0] == cursor and hit[1] == complete:
                self._tails.move_to_end(key)
                return cursor, hit[2]
        entries = []
        for raw in complete.splitlines():
            if raw.strip():
                entry = _parse(raw, agent)
                entries.append((_level(entry), entry))
        cost = len(complete) + 200
        with self._lock:
            self.parsed += 1
            old = self._tails.pop(key, None)
            if old is not None:
                self.held -= len(old[1]) + 200
            if cost <= self.budget_bytes:
                self._tails[key] = (cursor, complete, entries)
                self.held += cost
                while self.held > self.budget_bytes:
                    _, dropped = self._tails.popitem(last=False)
                    self.held -= len(dropped[1]) + 200
        return cursor, entries


TAILS = TailCache()


def _parse(raw: bytes, agent: str) -> dict[str, Any]:
    try:
        entry = json.loads(raw)
        if isinstance(entry, dict):
            entry.setdefault("agent", agent)
            return entry
    except ValueError:
        pass
    return {"agent": agent, "level": "info", "msg": raw.decode(errors="replace")[:2000]}


def read(agents: list[str], level: str | None, lines: int,
         cursor: dict[str, int] | None, directory: Path | None = None) -> dict[str, Any]:
    directory = directory or log_dir()
    floor = LEVELS.index(level) if level in LEVELS else 0
    out: list[dict[str, Any]] = []
    new_cursor: dict[str, int] = {}
    for agent in agents:
        path = directory / f"{agent}.log"
        if not path.is_file():
            continue
        size = path.stat().st_size
        start = (cursor or {}).get(agent)
        if start is None or start > size:  # the tail: parsed once per version of the file
            new_cursor[agent], tail = TAILS.get(path, agent, lines)
            out.extend(e for lvl, e in tail if lvl < 0 or lvl >= floor)
            continue
        data = b""
        if size > start:  # an idle follow poll opens nothing
            with path.open("rb") as f:
                f.seek(start)
                data = f.read(min(size - start, READ_LIMIT))
        complete = data[: data.rfind(b"\n") + 1]  # leave a half-written line for next time
        new_cursor[agent] = start + len(complete)
        for raw in complete.splitlines():
            if raw.strip():
                entry = _parse(raw, agent)
                lvl = str(entry.get("level", "info")).lower()
                if lvl not in LEVELS or LEVELS.index(lvl) >= floor:
                    out.append(entry)
    out.sort(key=lambda e: str(e.get("ts", "")))
    return {"lines": out[-lines:], "cursor": new_cursor}


def idle(agents: list[str], cursor: dict[str, int] | None,
         directory: Path | None = None) -> dict[str, Any] | None:
    """`read`'s answer when a follow poll finds nothing new (every chosen file that exists
    is exactly as long as its cursor), from one stat per file and without a worker thread;
    None when there may be something to read (then ask `read`)."""
    if not cursor:
        return None
    directory = directory or log_dir()
    new_cursor: dict[str, int] = {}
    for agent in agents:
        try:
            st = os.stat(directory / f"{agent}.log")
        except FileNotFoundError:
            continue  # `read` skips a missing file
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            continue  # as `read`: not a file
        if cursor.get(agent) != st.st_size:
            return None
        new_cursor[agent] = st.st_size
    return {"lines": [], "cursor": new_cursor}
