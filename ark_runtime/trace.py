"""`ark trace ID` (AGENT_03): one flow's whole path across agents and hosts.

ID may be a correlation id or any message id of the flow. Sources: the JSON log files of every
agent (`$ARK_LOG_DIR`, or several `--log-dir`s, e.g. one fetched per host; rotated `.N` and
`.gz` files included) and the decisions stored by HRM (`$ARK_STATE_DIR`). Hops are printed in
time order.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ark_runtime.exitcodes import ExitCode
from ark_runtime.logjson import log_dir
from ark_runtime.settings import declared
from ark_runtime.validators import ValidationError, validate_id


@dataclass
class Hop:
    ts: str
    source: str  # host/agent or "store"
    event: str
    detail: str
    message_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def _log_files(directories: Iterable[Path]) -> Iterator[Path]:
    for d in directories:
        if d.is_dir():
            yield from sorted(p for p in d.iterdir() if ".log" in p.name and p.is_file())


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            for text in fh:
                if '"correlation_id"' not in text:
                    continue
                try:
                    line = json.loads(text)
                except ValueError:
                    continue
                if isinstance(line, dict):
                    yield from expand_hops(line)
    except OSError as exc:
        print(f"ark trace: skipping {path}: {exc}", file=sys.stderr)


def expand_hops(line: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A batch line (`hops`: one record per message an agent committed, logged once per
    batch instead of one line per message) as one line per hop; any other line as itself."""
    hops = line.get("hops")
    if not isinstance(hops, list):
        yield line
        return
    base = {k: v for k, v in line.items() if k != "hops"}
    for hop in hops:
        if isinstance(hop, dict):
            yield {**base, **hop}


def _hop(ln: dict[str, Any]) -> Hop:
    """One log record of a flow as a hop."""
    return Hop(
        ts=str(ln.get("ts", "")),
        source=f"{ln.get('host', '?')}/{ln.get('agent', '?')}",
        event=str(ln.get("event", ln.get("level", ""))),
        detail=str(ln.get("msg", "")),
        message_id=ln.get("emitted_id") or ln.get("message_id"),
        raw=ln,
    )


def collect(ident: str, directories: list[Path],
            store_hops: Iterable[Hop] | None = None) -> tuple[str | None, list[Hop]]:
    """Returns (correlation id, hops in time order)."""
    lines = [ln for p in _log_files(directories) for ln in _lines(p)]
    correlation = None
    for ln in lines:
        if ln.get("correlation_id") == ident:
            correlation = ident
            break
    if correlation is None:
        for ln in lines:
            if ident in (ln.get("message_id"), ln.get("emitted_id")):
                correlation = ln.get("correlation_id")
                break
    if correlation is None:
        return None, []
    hops = [_hop(ln) for ln in lines if ln.get("correlation_id") == correlation]
    hops.extend(store_hops or [])
    hops.sort(key=_when)
    return correlation, hops


class _FileIndex:
    """What one log file held when last read: its lines that mention a correlation id, by
    correlation id, and for each message id the correlation of its first record."""

    __slots__ = ("check", "corr", "first", "gz", "offset", "stamp")

    def __init__(self, gz: bool = False, stamp: tuple[int, int] = (0, 0)) -> None:
        self.gz = gz
        self.stamp = stamp  # .gz only: (size, mtime_ns) it was read at
        self.offset = 0  # plain files: bytes read so far, always just after a "\n"
        self.check = b""  # the last bytes before `offset`, to notice a truncated+regrown file
        # correlation id -> [(line text, index of the record in expand_hops(line))]
        self.corr: dict[str, list[tuple[str, int]]] = {}
        # message or emitted id -> correlation_id of the first record naming it
        self.first: dict[str, Any] = {}

    def add(self, text: str) -> None:
        """One line as `_lines` sees it: skipped, or each of its records indexed."""
        if '"correlation_id"' not in text:
            return
        try:
            line = json.loads(text)
        except ValueError:
            return
        if not isinstance(line, dict):
            return
        for n, rec in enumerate(expand_hops(line)):
            cid = rec.get("correlation_id")
            if isinstance(cid, str):
                self.corr.setdefault(cid, []).append((text, n))
            for key in ("message_id", "emitted_id"):
                ident = rec.get(key)
                if isinstance(ident, str):  # `ident in (...)` only ever equals a str
                    self.first.setdefault(ident, cid)

    def add_text(self, text: str) -> None:
        # The lines `for text in open(path, "rt")` yields: universal newlines (\n, \r\n, \r).
        for part in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            self.add(part)


class TraceIndex:
    """`collect`, with what each log file held kept between calls (the API's trace route).

    Files are known by (device, inode): a call reads only the bytes appended since the last
    one, so a rename rotation (`kyle.log` -> `kyle.log.1`) keeps its index under the new
    name. A file shorter than what was read, or whose bytes before that point changed
    (copytruncate, then regrown), is read again from the start; a `.gz` file is re-read
    when its size or mtime changes. A last line without its newline yet is parsed on each
    call and never kept, so a half-written line is not indexed half (and a complete one
    without its newline still counts, as in `collect`).

    Memory: only files found by the current call are kept (an entry whose file is gone is
    dropped), and per file only the text of the lines that name a correlation id -- the same
    lines `collect` parses and holds on every call. The bound is the log files on disk,
    which logrotate bounds (size and generations).

    Results equal `collect`'s for the same files (tests/unit/test_trace_index.py). A flow
    whose correlation id is not a string (never written by the agents) is left to `collect`.
    """

    CHECK = 64
    # Logs larger than this on disk are scanned per call as `collect` does, holding nothing:
    # logrotate allows 50M x 15 generations per agent, which held in this process would pass
    # the API's own MemoryMax (512 MB). A `.gz` counts 10x its size (JSON lines compress
    # about that well), a plain file its size.
    BUDGET_BYTES = 48 * 1024 * 1024

    def __init__(self, budget_bytes: int = BUDGET_BYTES) -> None:
        self._lock = threading.Lock()
        self._files: dict[tuple[int, int], _FileIndex] = {}
        self.budget_bytes = budget_bytes

    def collect(self, ident: str, directories: list[Path],
                store_hops: Iterable[Hop] | None = None) -> tuple[str | None, list[Hop]]:
        with self._lock:  # the route runs in a thread pool; a lookup takes ~0.1 ms
            return self._collect(ident, directories, store_hops)

    def _collect(self, ident: str, directories: list[Path],
                 store_hops: Iterable[Hop] | None) -> tuple[str | None, list[Hop]]:
        if _log_bytes(directories) > self.budget_bytes:
            self._files = {}
            return collect(ident, directories, store_hops)
        parts = self._refresh(directories)
        correlation: Any = None
        if any(ident in part.corr for part in parts):
            correlation = ident
        else:
            for part in parts:
                if ident in part.first:
                    correlation = part.first[ident]
                    break
        if correlation is None:
            return None, []
        if not isinstance(correlation, str):
            return collect(ident, directories, store_hops)
        hops = [_hop(list(expand_hops(json.loads(text)))[n])
                for part in parts for text, n in part.corr.get(correlation, ())]
        hops.extend(store_hops or [])
        hops.sort(key=_when)
        return correlation, hops

    def _refresh(self, directories: list[Path]) -> list[_FileIndex]:
        """Each log file's index in `collect`'s order (a file's unfinished last line as a
        part of its own, right after it)."""
        parts: list[_FileIndex] = []
        seen: dict[tuple[int, int], _FileIndex] = {}
        for path in _log_files(directories):
            key = None
            try:
                st = os.stat(path)
                key = (st.st_dev, st.st_ino)
                if path.suffix == ".gz":
                    entry = self._gz(path, key, (st.st_size, st.st_mtime_ns))
                    if entry is not None:
                        seen[key] = entry
                        parts.append(entry)
                    continue
                entry, tail = self._plain(path, key)
            except OSError as exc:
                if key is not None:
                    self._files.pop(key, None)
                print(f"ark trace: skipping {path}: {exc}", file=sys.stderr)
                continue
            seen[key] = entry
            parts.append(entry)
            if tail is not None:
                parts.append(tail)
        self._files = seen  # files no longer listed are forgotten
        return parts

    def _plain(self, path: Path, key: tuple[int, int]) -> tuple[_FileIndex, _FileIndex | None]:
        entry = self._files.get(key)
        if entry is None or entry.gz:
            entry = _FileIndex()
        with open(path, "rb") as fh:
            fh.seek(entry.offset - len(entry.check))
            data = fh.read()
            if data[:len(entry.check)] != entry.check:  # truncated (copytruncate) or replaced
                entry = _FileIndex()
                fh.seek(0)
                data = fh.read()
            else:
                data = data[len(entry.check):]
        cut = data.rfind(b"\n") + 1
        if cut:
            entry.add_text(data[:cut - 1].decode("utf-8", errors="replace"))
            entry.offset += cut
            entry.check = (entry.check + data[:cut])[-self.CHECK:]
        tail = None
        if cut < len(data):
            tail = _FileIndex()
            tail.add_text(data[cut:].decode("utf-8", errors="replace"))
        return entry, tail

    def _gz(self, path: Path, key: tuple[int, int], stamp: tuple[int, int]) -> _FileIndex | None:
        entry = self._files.get(key)
        if entry is not None and entry.gz and entry.stamp == stamp:
            return entry
        entry = _FileIndex(gz=True, stamp=stamp)
        try:
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
                for text in fh:
                    entry.add(text)
        except OSError as exc:  # as `_lines`: what was read counts, the file is not kept
            print(f"ark trace: skipping {path}: {exc}", file=sys.stderr)
            entry.stamp = (-1, -1)
        return entry


def _log_bytes(directories: list[Path]) -> int:
    """What indexing the logs would hold at most (TraceIndex.BUDGET_BYTES): one stat each."""
    total = 0
    for path in _log_files(directories):
        with contextlib.suppress(OSError):
            total += os.stat(path).st_size * (10 if path.suffix == ".gz" else 1)
    return total


INDEX = TraceIndex()  # the API process's one index (its log directory)


def _when(hop: Hop) -> datetime:
    # Logs and the store format timestamps differently; compare instants, not strings.
    try:
        value = datetime.fromisoformat(hop.ts)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def stored_decisions(correlation_id: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """Decisions for one flow (read-only use of HRM's store)."""
    # Imported here: the control side's trace (ark_ops.fleet.trace) reads logs only.
    from ark_runtime.host.layout import store_path
    from ark_runtime.store import MemoryStore, StoreError

    path = store_path(env)
    if not path.exists():
        return []
    with MemoryStore(path) as store:
        out = []
        for rec in store.decisions(correlation_id):
            try:
                rec["symbol"] = store.load(rec["plan_hash"]).get("symbol", "")
            except (KeyError, StoreError):
                rec["symbol"] = "?"
            rec["ts"] = rec["decided_at"]
            out.append(rec)
        return out


def _decision_hops(correlation: str, env: dict[str, str]) -> list[Hop]:
    hops = []
    for rec in stored_decisions(correlation, env):
        verdict = "approved" if rec["approved"] else "rejected"
        rules = ", ".join(v["rule_id"] for v in rec.get("violations", []))
        hops.append(Hop(ts=rec["ts"], source="store/decisions", event="decision",
                        detail=f"{verdict} {rec.get('symbol', '')}" + (f" ({rules})" if rules
                                                                       else ""),
                        message_id=rec.get("message_id"), raw=rec))
    return hops


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="reconstruct one message flow from the logs and the store")
    p.add_argument("id", help="correlation id or any message id of the flow")
    p.add_argument("--log-dir", action="append", type=Path,
                   help="directory of agent logs (repeatable, e.g. one per host); "
                        "default $ARK_LOG_DIR or /var/log/ark")
    p.add_argument("--json", action="store_true", help="one JSON object per hop")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        ident = validate_id(args.id, "trace id")
    except ValidationError as exc:
        print(f"ark trace: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    dirs = args.log_dir or [log_dir()]
    if not all(isinstance(d, Path) for d in dirs):  # argparse reads `--log-dir=--` as []
        print("ark trace: --log-dir needs a directory name", file=sys.stderr)
        return ExitCode.USAGE
    try:
        correlation, hops = collect(ident, dirs)
    except OSError as exc:  # e.g. a --log-dir name too long or not readable
        print(f"ark trace: cannot read the logs in --log-dir: {exc.strerror or exc}",
              file=sys.stderr)
        return ExitCode.NOPERM if isinstance(exc, PermissionError) else ExitCode.USAGE
    if correlation is None:
        print(f"ark trace: no log line mentions {ident} in {', '.join(map(str, dirs))}",
              file=sys.stderr)
        return ExitCode.FAILURE
    try:
        store = _decision_hops(correlation, declared())
    except Exception as exc:  # the logs alone are still a useful trace
        print(f"ark trace: store not readable ({exc}); showing logs only", file=sys.stderr)
        store = []
    hops = sorted(hops + store, key=_when)
    print(f"trace {correlation}: {len(hops)} hops")
    for h in hops:
        if args.json:
            print(json.dumps({"ts": h.ts, "source": h.source, "event": h.event,
                              "message_id": h.message_id, "detail": h.detail}))
        else:
            print(f"{h.ts}  {h.source:<24} {h.event:<14} {h.message_id or '-':<36}  {h.detail}")
    return 0
