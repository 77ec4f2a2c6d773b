"""SEC_03: `ark audit ingest` (root) moves the console's spooled records into the audit chain
exactly once, and survives a crash at any point.

1. Claim: rename `<spool>/api.jsonl` to `<spool>/claimed-<ns>.jsonl`. The API's writer holds a
   shared flock while it writes and, once locked, checks that its file is still `api.jsonl`
   (else it reopens); so once the ingester holds the claimed file's exclusive lock, no write
   can still land in it. The claimed file is then made root's (0600).
2. Ingest each claimed file, oldest first, line by line from its marker offset. A valid line
   (audit_spool.SpoolRecord) is appended to the chain as the console's; a bad one is copied to
   `<audit>/spool-quarantine.jsonl` and a `console.spool-rejected` record names its field, and
   the rest carry on. After each line the marker (`<audit>/spool-ingest.json`: claim, inode,
   offset) moves past it.
3. Unlink the claimed file, then the marker.

A crash between an append and its marker leaves one line in the chain but not past the
marker: every record carries `args.spool = "<claim>@<offset>"`, and the first line a run
would process is looked up at the end of the live chain file before it is appended again.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import os
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ark_runtime.host.atomic import atomic_write_text, fsync_dir
from ark_runtime.host.audit.log import AuditLog
from ark_runtime.host.audit.spool import SOURCE, SpoolLineError, parse_line

SPOOL_NAME = "api.jsonl"
CLAIM_PREFIX = "claimed-"
MARKER_NAME = "spool-ingest.json"
QUARANTINE_NAME = "spool-quarantine.jsonl"
MAX_LINE = 65536
_TAIL = 262144  # how far back the resume looks for its one possibly-written line


@dataclass
class IngestResult:
    ingested: int = 0
    quarantined: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)  # one sentence per quarantined line


def spool_id(claim: str, offset: int) -> str:
    return f"{claim}@{offset}"


@contextlib.contextmanager
def _ingest_lock(audit_dir: Path) -> Iterator[None]:
    """One ingester at a time (the path unit and an operator's manual run may overlap)."""
    fd = os.open(audit_dir / "ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def claim(spool: Path) -> Path | None:
    """Rename the live spool file to a claimed name (None when there is nothing to claim)."""
    target = spool / f"{CLAIM_PREFIX}{time.time_ns()}.jsonl"
    try:
        os.rename(spool / SPOOL_NAME, target)
    except FileNotFoundError:
        return None
    fsync_dir(spool)
    return target


def claimed_files(spool: Path) -> list[Path]:
    """Claimed files left by this run or a crashed one, oldest first (the name is the time)."""
    found = [p for p in spool.iterdir()
             if p.name.startswith(CLAIM_PREFIX) and p.name.endswith(".jsonl")]
    return sorted(found, key=lambda p: (len(p.name), p.name))


def _load_marker(audit_dir: Path) -> dict | None:
    try:
        data = json.loads((audit_dir / MARKER_NAME).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _save_marker(audit_dir: Path, claim_name: str, inode: int, offset: int) -> None:
    atomic_write_text(audit_dir / MARKER_NAME,
                      json.dumps({"claim": claim_name, "inode": inode, "offset": offset}) + "\n",
                      mode=0o600)


def _drop_marker(audit_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (audit_dir / MARKER_NAME).unlink()


def in_chain(log: AuditLog, ident: str) -> bool:
    """Was the line with this spool id appended already (by a run that then crashed)?"""
    try:
        with log.path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - _TAIL))
            tail = fh.read()
    except FileNotFoundError:
        return False
    # Written by json.dumps: an id inside another string would have escaped quotes.
    return f'"spool":"{ident}"'.encode() in tail


class NotRegular(OSError):
    """Something other than a file under a claimed name (never read, only removed)."""


def _open_claimed(path: Path) -> int:
    """The claimed file, exclusively locked (waits out a writer that opened it before the
    rename), a regular file (not a link someone put there), root's from now on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegular(f"{path.name} is a symbolic link") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegular(f"{path.name} is not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX)
        # Held: every write that began before the rename is done. Let go at once: a writer
        # that locks from now on sees the file is no longer the spool's and reopens, so the
        # API (which writes from its event loop) never waits for a whole ingest.
        fcntl.flock(fd, fcntl.LOCK_UN)
        if os.geteuid() == 0:
            os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lines(fd: int, start: int) -> Iterator[tuple[int, int, bytes]]:
    """(offset, next offset, line without its newline) from `start`; a last line without a
    newline (a writer died mid-line) is still a line: the quarantine shows it."""
    with os.fdopen(os.dup(fd), "rb") as fh:
        fh.seek(start)
        offset = start
        while True:
            raw = fh.readline(MAX_LINE + 1)
            if not raw:
                return
            end = offset + len(raw)
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                rest = fh.readline()  # the remainder of an over-long line
                end += len(rest)
                raw += rest
            yield offset, end, raw.rstrip(b"\n")
            offset = end


class Ingester:
    def __init__(self, spool: Path, log: AuditLog) -> None:
        self.spool, self.log, self.result = spool, log, IngestResult()

    @property
    def audit_dir(self) -> Path:
        return self.log.directory

    def run(self) -> IngestResult:
        if self.spool.is_symlink():  # user ark owns the spool's parent: never follow it
            raise OSError(f"{self.spool} is a symbolic link, not the API's spool directory")
        if not self.spool.is_dir():
            return self.result  # the API has not recorded anything yet
        self.audit_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _ingest_lock(self.audit_dir):
            claim(self.spool)
            for path in claimed_files(self.spool):
                self._ingest_file(path)
            _drop_marker(self.audit_dir)
        return self.result

    def _ingest_file(self, path: Path) -> None:
        try:
            fd = _open_claimed(path)
        except NotRegular as exc:  # a link or a device in the spool: refuse it, keep going
            self._quarantine(path.name, 0, b"", f"not ingested: {exc}")
            path.unlink(missing_ok=True)
            return
        try:
            inode = os.fstat(fd).st_ino
            marker = _load_marker(self.audit_dir) or {}
            resume = marker.get("claim") == path.name and marker.get("inode") == inode
            start = int(marker.get("offset", 0)) if resume else 0
            first = True
            for offset, end, raw in _lines(fd, start):
                ident = spool_id(path.name, offset)
                if not (first and in_chain(self.log, ident)):
                    self._one(ident, path.name, offset, raw)
                first = False
                _save_marker(self.audit_dir, path.name, inode, end)
        finally:
            os.close(fd)
        path.unlink()
        fsync_dir(self.spool)
        self.result.files += 1

    def _one(self, ident: str, claim_name: str, offset: int, raw: bytes) -> None:
        if not raw.strip():
            return  # an empty line carries nothing to lose
        try:
            if len(raw) > MAX_LINE:
                raise SpoolLineError(f"the line is longer than {MAX_LINE} bytes")
            rec = parse_line(raw)
        except SpoolLineError as exc:
            self._quarantine(claim_name, offset, raw, str(exc))
            return
        self.log.append(**rec.append_kwargs(ident))
        self.result.ingested += 1

    def _quarantine(self, claim_name: str, offset: int, raw: bytes, why: str) -> None:
        """Keep the line (root-only, beside the chain) and record in the chain that it was
        refused and why; the line's content never goes into an error message."""
        ident = spool_id(claim_name, offset)
        entry: dict[str, object] = {"spool": ident, "error": why, "bytes": len(raw)}
        try:
            entry["line"] = raw.decode("utf-8")
        except UnicodeDecodeError:  # kept byte for byte
            entry["line_base64"] = base64.b64encode(raw).decode()
        path = self.audit_dir / QUARANTINE_NAME
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.log.append(action="console.spool-rejected", result="failed",
                        args={"source": SOURCE, "spool": ident}, detail=why)
        self.result.quarantined += 1
        problem = f"{ident}: {why}"
        self.result.problems.append(problem)
        print(f"ark audit ingest: quarantined {problem}", file=sys.stderr)


def ingest(spool: Path, log: AuditLog) -> IngestResult:
    return Ingester(spool, log).run()
