"""Log viewer backend: tail the agents' JSON log files and follow them by byte offset.

The page asks for the last N lines, then keeps asking with the cursor it got back
({file: offset}) for what was appended since. A rotated (shorter) file restarts at 0.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from ark_runtime.logjson import log_dir
from ark_runtime.pipeline import LOG_SOURCES

SOURCES = LOG_SOURCES  # the agents of ark_runtime/pipeline.py, then the API
LEVELS = ("debug", "info", "warning", "error", "critical")
AGENT = re.compile(r"^[a-z]+$")
MAX_LINES = 500
READ_LIMIT = 1 << 20  # never read more than 1 MiB per file per request


def _tail_offset(path: Path, lines: int) -> int:
    size = path.stat().st_size
    start = max(size - min(READ_LIMIT, 256 * lines), 0)
    with path.open("rb") as f:
        f.seek(start)
        chunk = f.read(size - start)
    cut = chunk.split(b"\n")
    keep = b"\n".join(cut[-(lines + 1):])  # the last item is the empty tail after "\n"
    return size - len(keep)


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
        if start is None or start > size:
            start = _tail_offset(path, lines)
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
