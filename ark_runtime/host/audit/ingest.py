"""SEC_03: `ark audit ingest` (root) moves the console's audit records from the journal into
the audit chain, exactly once, believing only what journald vouches for (issue 21, vuln 6).

Where from: `journalctl -o json --all ARK_CONSOLE_AUDIT=1 [--after-cursor C] [-f --no-tail]`,
every entry that carries the console's marker field (ark_runtime/api/audit_hook.py).

Whom it believes: anyone can send an entry with that field (`systemd-cat`, `logger --journald`,
a datagram to the socket), so the field only selects. An entry is the console's when the
fields journald writes itself, which a sender cannot set, say so: `_SYSTEMD_UNIT` is
ark-api.service (journald reads it from the sender's cgroup; user ark cannot move a process
into another unit's cgroup, nor create a unit of that name) and `_UID` is the API user's (the
kernel's SCM_CREDENTIALS). Anything else, an agent's lookalike included, is refused: kept in
`<audit>/journal-quarantine.jsonl` and named in the chain by a `console.journal-refused` record
(its unit, uid and pid, never its content), so a forgery attempt is itself on the record.

Why not the spool file it replaces: the API and the agents both run as user ark, so whatever
the API could write to, an agent could forge into and erase from; the old ingester could only
check each line's shape. Why not a MAC: its key would live in a process of user ark, which the
agents share. The residual: a process inside ark-api.service speaks for the console, which is
what the API is (and it runs non-dumpable, so another ark process cannot ptrace it or write
its memory through /proc; ark_runtime/api/server.py).

Nothing lost, nothing twice:
* each record carries `seq`, from 1 in each API process (stream = invocation id + pid). The
  next one expected is last + 1: a higher one first appends `console.audit-gap` naming the
  missing numbers (journald dropped or vacuumed them before they were read); a lower or equal
  one is refused as a replay.
* the state (`<audit>/journal-ingest.json`, root 0600: the cursor of the last entry handled
  and the last seq per stream) is replaced atomically after the record is appended and
  fsynced. A crash between the two leaves the entry in the chain but not behind the cursor:
  its id (`args.journal`, a digest of the journal cursor) is looked up at the end of the chain
  before the first entry of a run is appended.
* bad input never stops the run: each refused entry is one quarantine line and one chain
  record naming the field; the rest carry on.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ark_runtime.host.atomic import atomic_write_text
from ark_runtime.host.audit.console_record import RecordError, parse_message
from ark_runtime.host.audit.log import AuditLog

MARK_FIELD = "ARK_CONSOLE_AUDIT"  # audit_hook.MARK_FIELD (the host wing does not import api)
API_UNIT = "ark-api.service"
STATE_NAME = "journal-ingest.json"
QUARANTINE_NAME = "journal-quarantine.jsonl"
LOCK_NAME = "journal-ingest.lock"  # not the spool ingester's: a rolled-back one never waits on it
MAX_ENTRY = 262144  # one journalctl JSON line; the API's records are far smaller
MAX_STREAMS = 64  # API processes remembered (each restart is a new one)
_TAIL = 262144  # how far back the resume looks for its one possibly-written record


@dataclass
class IngestResult:
    ingested: int = 0
    refused: int = 0
    gaps: int = 0
    problems: list[str] = field(default_factory=list)  # one sentence per refused entry


@dataclass(frozen=True)
class Trust:
    """Who the console is: the unit and the uid journald must have stamped on an entry."""
    unit: str
    uid: int


class EntryRefused(ValueError):
    """An entry the ingester does not take; the message says why without quoting it."""


def entry_id(cursor: str) -> str:
    return hashlib.sha256(cursor.encode()).hexdigest()[:24]


def _one_string(entry: dict[str, Any], name: str) -> str | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        raise EntryRefused(f"field {name} appears more than once")
    if not isinstance(value, str):
        raise EntryRefused(f"field {name} is not text")
    return value


def decode_entry(raw: bytes) -> dict[str, Any]:
    """One line of `journalctl -o json`: an object with a string __CURSOR."""
    if len(raw) > MAX_ENTRY:
        raise EntryRefused(f"the journal entry is longer than {MAX_ENTRY} bytes")
    try:
        entry = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise EntryRefused("the journal entry is not JSON") from None
    if not isinstance(entry, dict):
        raise EntryRefused(f"the journal entry is a JSON {type(entry).__name__}, not an object")
    if not isinstance(entry.get("__CURSOR"), str) or not entry["__CURSOR"]:
        raise EntryRefused("field __CURSOR is missing")
    return entry


def check_sender(entry: dict[str, Any], trust: Trust) -> str:
    """The entry's stream (API invocation/pid) when journald's own fields say the console
    sent it; EntryRefused naming the field otherwise."""
    unit = _one_string(entry, "_SYSTEMD_UNIT")
    if unit != trust.unit:
        raise EntryRefused(f"field _SYSTEMD_UNIT is {unit or 'missing'}, not {trust.unit}")
    uid = _one_string(entry, "_UID")
    if uid != str(trust.uid):
        raise EntryRefused(f"field _UID is {uid or 'missing'}, not the API user's {trust.uid}")
    pid = _one_string(entry, "_PID")
    if not pid or not pid.isdigit():
        raise EntryRefused("field _PID is missing")
    invocation = _one_string(entry, "_SYSTEMD_INVOCATION_ID") or (
        "boot-" + (_one_string(entry, "_BOOT_ID") or "unknown"))
    return f"{invocation}/{pid}"


def _message(entry: dict[str, Any]) -> bytes:
    value = entry.get("MESSAGE")
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)  # journalctl's form for a value that is not UTF-8
    raise EntryRefused("field MESSAGE is missing or appears more than once")


def _sender_args(entry: dict[str, Any]) -> dict[str, str]:
    """Who sent a refused entry, from journald's own fields (short, printable)."""
    out = {}
    for name, key in (("_SYSTEMD_UNIT", "sender_unit"), ("_UID", "sender_uid"),
                      ("_PID", "sender_pid"), ("_COMM", "sender_comm")):
        value = entry.get(name)
        if isinstance(value, str):
            out[key] = "".join(ch if ch.isprintable() else "?" for ch in value[:64])
    return out


@contextlib.contextmanager
def ingest_lock(audit_dir: Path, *, wait: bool) -> Iterator[bool]:
    """One ingester at a time: the following service holds it for its life, so a manual run
    (wait=False) learns that records are already being taken as they come."""
    fd = os.open(audit_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def in_chain(log: AuditLog, ident: str) -> bool:
    """Was the entry with this id appended already (by a run that then crashed)?"""
    try:
        with log.path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - _TAIL))
            tail = fh.read()
    except FileNotFoundError:
        return False
    # Written by json.dumps: an id inside another string would have escaped quotes.
    return f'"journal":"{ident}"'.encode() in tail


class Ingester:
    """Takes journalctl's JSON lines one by one (`feed`); the state moves after each."""

    def __init__(self, log: AuditLog, trust: Trust) -> None:
        self.log, self.trust, self.result = log, trust, IngestResult()
        self.state = self._load_state()
        self._first = True

    @property
    def audit_dir(self) -> Path:
        return self.log.directory

    @property
    def cursor(self) -> str | None:
        cursor = self.state.get("cursor")
        return cursor if isinstance(cursor, str) and cursor else None

    def _load_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.audit_dir / STATE_NAME).read_text())
        except (FileNotFoundError, ValueError):
            return {"cursor": None, "streams": {}}
        if not isinstance(data, dict) or not isinstance(data.get("streams"), dict):
            return {"cursor": None, "streams": {}}
        return data

    def _save_state(self, cursor: str) -> None:
        streams = self.state["streams"]
        while len(streams) > MAX_STREAMS:  # dicts keep insertion order: the oldest go
            del streams[next(iter(streams))]
        self.state["cursor"] = cursor
        atomic_write_text(self.audit_dir / STATE_NAME,
                          json.dumps(self.state, sort_keys=True) + "\n", mode=0o600)

    def feed(self, raw: bytes) -> None:
        raw = raw.rstrip(b"\n")
        if not raw.strip():
            return
        try:
            entry = decode_entry(raw)
        except EntryRefused as exc:  # not even a cursor: journalctl itself misbehaved
            self._refuse(None, raw, {}, str(exc))
            return
        cursor = entry["__CURSOR"]
        ident = entry_id(cursor)
        first, self._first = self._first, False
        if first and in_chain(self.log, ident):
            self._seen(entry)  # appended by a run that died before its state was saved
        else:
            self._take(entry, ident, raw)
        self._save_state(cursor)

    def _seen(self, entry: dict[str, Any]) -> None:
        with contextlib.suppress(EntryRefused, RecordError):
            stream, seq = check_sender(entry, self.trust), parse_message(_message(entry)).seq
            self._advance(stream, max(seq, self.state["streams"].get(stream, 0)))

    def _advance(self, stream: str, seq: int) -> None:
        self.state["streams"].pop(stream, None)
        self.state["streams"][stream] = seq  # the newest stream last (pruning order)

    def _take(self, entry: dict[str, Any], ident: str, raw: bytes) -> None:
        try:
            stream = check_sender(entry, self.trust)
            rec = parse_message(_message(entry))
        except (EntryRefused, RecordError) as exc:
            self._refuse(ident, raw, entry, str(exc))
            return
        last = self.state["streams"].get(stream, 0)
        if rec.seq <= last:
            self._refuse(ident, raw, entry,
                         f"field seq: {rec.seq} repeats or goes back (last was {last})")
            return
        if rec.seq > last + 1:
            missing = f"{last + 1}..{rec.seq - 1}" if rec.seq - 1 > last + 1 else f"{last + 1}"
            self.log.append(action="console.audit-gap", result="failed",
                            args={"source": "journal", "api_stream": stream,
                                  "missing": missing, "journal": ident + "-gap"},
                            detail=f"console records {missing} of this API process never "
                                   "reached the journal reader (dropped or vacuumed)")
            self.result.gaps += 1
            print(f"ark audit ingest: records {missing} of {stream} are missing",
                  file=sys.stderr)
        self.log.append(**rec.append_kwargs(ident, stream))
        self._advance(stream, rec.seq)
        self.result.ingested += 1

    def _refuse(self, ident: str | None, raw: bytes, entry: dict[str, Any], why: str) -> None:
        """Keep the entry (root-only, beside the chain) and record in the chain that it was
        refused, who sent it and why; its content never goes into the chain or a message."""
        kept: dict[str, object] = {"journal": ident, "error": why, "bytes": len(raw)}
        try:
            kept["entry"] = raw.decode("utf-8")
        except UnicodeDecodeError:  # kept byte for byte
            kept["entry_base64"] = base64.b64encode(raw).decode()
        fd = os.open(self.audit_dir / QUARANTINE_NAME,
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(kept, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.log.append(action="console.journal-refused", result="failed",
                        args={"source": "journal", "journal": ident or "unreadable",
                              **_sender_args(entry)}, detail=why)
        self.result.refused += 1
        problem = f"{ident or 'an unreadable entry'}: {why}"
        self.result.problems.append(problem)
        print(f"ark audit ingest: refused {problem}", file=sys.stderr)

    def run(self, lines: Iterable[bytes]) -> IngestResult:
        for raw in lines:
            self.feed(raw)
        return self.result


def journalctl_command(cursor: str | None, *, follow: bool,
                       journalctl: str = "journalctl") -> list[str]:
    """Every entry with the marker after the saved cursor (all of them the first time)."""
    cmd = [journalctl, "--output=json", "--all", "--no-pager", "--quiet"]
    if cursor:
        cmd.append(f"--after-cursor={cursor}")
    if follow:
        cmd += ["--follow", "--no-tail"]
    return [*cmd, f"{MARK_FIELD}=1"]


class JournalUnavailable(OSError):
    """journalctl failed (its message on stderr is passed on)."""


def ingest_journal(log: AuditLog, trust: Trust, *, follow: bool = False,
                   journalctl: str = "journalctl") -> IngestResult | None:
    """Read the journal into the chain (None when the following service already holds the
    ingest lock: it takes every record as it comes)."""
    log.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with ingest_lock(log.directory, wait=follow) as held:
        if not held:
            return None
        ingester = Ingester(log, trust)
        cmd = journalctl_command(ingester.cursor, follow=follow, journalctl=journalctl)
        # Following, journalctl's complaints go straight to this service's own journal.
        stderr = None if follow else subprocess.PIPE
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr) as proc:
            assert proc.stdout is not None
            ingester.run(proc.stdout)
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            code = proc.wait()
        # Some journalctl versions exit 1, silently, when no entry matched: not a failure.
        if code != 0 and (follow or err.strip()):
            raise JournalUnavailable(f"journalctl exited {code}: {err.strip()[:300]}")
        return ingester.result
