"""GOV_01: the audit log's hash chain — record format, reading every generation, verifying.

One record per line, JSON. Each record carries `seq` (0, 1, 2, ...), `prev_hash` (the previous
record's `hash`; GENESIS for seq 0) and `hash` = sha256 over the record's canonical
serialization without `hash` (keys sorted, no whitespace, UTF-8). Editing, deleting, inserting
or reordering any record breaks either a hash or the seq/prev_hash link of the record after it.

Rotation (logrotate `create`, optionally compressed) moves the live file aside and leaves an
empty one; the next record links to the previous generation's last hash (the appender keeps the
head) and carries `gen_start: true`. The chain is read back across every generation in the
directory (`audit.log`, `audit.log.1`, `audit.log.2.gz`, `audit.log-20261126.gz`, ...), ordered
by each file's first seq. Removing the OLDEST whole generations is what retention does and is
reported, not failed: the earliest record left must then start a generation. Removing the tail
is caught against the head (`head.json` on the host, and the control node's copy of it).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

GENESIS = "0" * 64
LOG_NAME = "audit.log"
HEAD_NAME = "head.json"
RESULTS = ("started", "ok", "failed", "partial")
FIELDS = ("seq", "prev_hash", "hash", "ts", "who", "action", "args", "where", "result",
          "duration", "correlation_id", "detail", "gen_start")
# audit.log, logrotate's audit.log.1 / audit.log.2.gz, or with dateext audit.log-20261126.gz;
# not audit.log.restored-* (a DR restore keeps another host's file beside ours).
# What reading a damaged .gz generation can raise: gzip's own errors (OSError, EOFError) and,
# for a flipped bit inside the deflate stream, zlib.error.
UNREADABLE = (OSError, EOFError, zlib.error)
_GENERATION = re.compile(r"^audit\.log(?:\.\d+|-\d{8,14})?(?:\.gz)?$")


def canonical(record: dict[str, Any]) -> bytes:
    """The bytes the hash covers: every field but `hash`, keys sorted, compact, UTF-8."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its `hash` set."""
    sealed = {k: v for k, v in record.items() if k != "hash"}
    sealed["hash"] = record_hash(sealed)
    return sealed


def line_of(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8") + b"\n"


@dataclass(slots=True)
class Line:
    file: str
    lineno: int
    raw: bytes
    record: dict[str, Any] | None  # None when the line is not a JSON object


def generation_files(audit_dir: Path) -> list[Path]:
    if not audit_dir.is_dir():
        return []
    return sorted(p for p in audit_dir.iterdir() if p.is_file() and _GENERATION.match(p.name))


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def read_bytes(path: Path) -> bytes:
    with _open(path) as fh:
        return fh.read()


def iter_lines(path: Path) -> Iterator[Line]:
    """A generation's lines, streamed (a year of records need not fit in memory)."""
    with _open(path) as fh:
        for n, raw in enumerate(fh, start=1):
            raw = raw.rstrip(b"\n")
            if not raw:
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                rec = None
            yield Line(path.name, n, raw, rec if isinstance(rec, dict) else None)


def _first_seq(path: Path) -> float:
    try:
        for ln in iter_lines(path):
            if ln.record is not None and isinstance(ln.record.get("seq"), int):
                return ln.record["seq"]
    except UNREADABLE:
        return float("-inf")  # does not decompress: first, so verify names it
    return float("inf")  # an empty live file (fresh after rotation) sorts last


def ordered_generations(audit_dir: Path) -> list[tuple[Path, Iterator[Line]]]:
    """Every generation with its lines (streamed when iterated), oldest first: by first
    seq, the live file last on a tie (i.e. when it is empty)."""
    paths = sorted(generation_files(audit_dir), key=lambda p: (_first_seq(p), p.name == LOG_NAME))
    return [(p, iter_lines(p)) for p in paths]


def iter_records(audit_dir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, lines in ordered_generations(audit_dir):
        for ln in lines:
            if ln.record is not None:
                yield path.name, ln.record


def read_head(audit_dir: Path) -> dict[str, Any] | None:
    try:
        head = json.loads((audit_dir / HEAD_NAME).read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {"seq": -1, "hash": "unreadable"}
    return head if isinstance(head, dict) else {"seq": -1, "hash": "unreadable"}


@dataclass
class Verdict:
    ok: bool
    records: int = 0
    files: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    problem: str | None = None  # one sentence naming the first bad record: file + seq
    bad_file: str | None = None
    bad_seq: int | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("ok", "records", "files", "first_seq", "last_seq",
                                              "last_hash", "problem", "bad_file", "bad_seq",
                                              "notes")}


_HASH_KEY = b'"hash":"'


def _raw_hash_ok(raw: bytes, digest: Any) -> bool:
    """Fast path for a line written canonically (as ark writes them): the canonical body is
    the line without its `"hash":"...",` member, so no re-serialisation is needed. The last
    `"hash":"` is the top-level key (only `args`, sorted before it, nests; a string value
    cannot hold an unescaped quote). Anything else takes the canonical path."""
    i = raw.rfind(_HASH_KEY)
    if i < 0 or not isinstance(digest, str):
        return False
    j = i + len(_HASH_KEY)
    if raw[j:j + 64] != digest.encode() or raw[j + 64:j + 66] != b'",':
        return False
    return hashlib.sha256(raw[:i] + raw[j + 66:]).hexdigest() == digest


def _record_problem(rec: dict[str, Any], raw: bytes = b"") -> str | None:
    missing = [k for k in FIELDS if k not in rec]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    extra = sorted(set(rec) - set(FIELDS))
    if extra:
        return f"unknown field(s) {', '.join(extra)}"
    if not isinstance(rec["seq"], int) or isinstance(rec["seq"], bool) or rec["seq"] < 0:
        return "seq is not a non-negative integer"
    if rec["result"] not in RESULTS:
        return f"result {rec['result']!r} is not one of {', '.join(RESULTS)}"
    if not _raw_hash_ok(raw, rec["hash"]) and rec["hash"] != record_hash(rec):
        return "hash does not match its content (edited)"
    return None


def _link_problem(rec: dict[str, Any], i: int, prev: dict[str, Any] | None,
                  v: Verdict) -> str | None:
    """Does this record continue the chain from `prev` (i: its index in its file)?"""
    if prev is None:
        v.first_seq = rec["seq"]
        if rec["seq"] == 0:
            if rec["prev_hash"] != GENESIS:
                return "seq 0 does not start from the genesis hash"
        elif not rec["gen_start"] or i != 0:
            return (f"records before seq {rec['seq']} are missing (the earliest record "
                    "left does not start a generation)")
        else:
            v.notes.append(f"records before seq {rec['seq']} were rotated out (retention)")
    else:
        if rec["seq"] != prev["seq"] + 1:
            return f"expected seq {prev['seq'] + 1} (a record was deleted, inserted or moved)"
        if rec["prev_hash"] != prev["hash"]:
            return "prev_hash does not link to the record before"
    if rec["gen_start"] != (i == 0):
        return f"generation boundary moved (gen_start is {rec['gen_start']} at line {i + 1})"
    return None


def _kept_head_problem(rec: dict[str, Any], head: dict[str, Any] | None,
                       expect: dict[str, Any] | None) -> str | None:
    for label, want in (("the head file", head), ("the control node's head", expect)):
        if want and want.get("seq") == rec["seq"] and want.get("hash") != rec["hash"]:
            return f"hash differs from the one {label} recorded (rewritten)"
    return None


def verify_lines(gens: list[tuple[str, Iterable[Line]]],
                 head: dict[str, Any] | None = None,
                 expect: dict[str, Any] | None = None) -> Verdict:
    """Walk the chain; the first break wins. `head` is the host's head file, `expect` a head
    someone else kept (the control node): the chain must reach both."""
    v = Verdict(ok=True, files=len(gens))
    prev: dict[str, Any] | None = None

    def bad(file: str, seq: Any, why: str) -> Verdict:
        v.ok, v.bad_file, v.bad_seq = False, file, seq if isinstance(seq, int) else None
        v.problem = f"{file} seq {seq}: {why}"
        return v

    for name, lines in gens:
        try:
            for i, ln in enumerate(lines):
                rec = ln.record
                if rec is None:
                    return bad(name, prev["seq"] + 1 if prev else 0,
                               f"line {ln.lineno} is not a JSON record")
                why = _record_problem(rec, ln.raw) or _link_problem(rec, i, prev, v)
                why = why or _kept_head_problem(rec, head, expect)
                if why:
                    return bad(name, rec.get("seq"), why)
                prev = rec
                v.records += 1
        except UNREADABLE as exc:  # a .gz generation cut short or garbled
            return bad(name, prev["seq"] + 1 if prev else 0,
                       f"the file does not decompress ({exc})")
    if prev is not None:
        v.last_seq, v.last_hash = prev["seq"], prev["hash"]
    if head and prev is not None and isinstance(head.get("seq"), int):
        if prev["seq"] == head["seq"] + 1:
            v.notes.append(f"seq {prev['seq']} was written after the head file "
                           "(an append interrupted before the head was updated)")
        elif prev["seq"] > head["seq"] + 1:
            return bad(gens[-1][0], head["seq"] + 1, "records after the head file's seq "
                       f"{head['seq']} (appended outside ark audit)")
    for label, want in (("the head file", head), ("the control node's head", expect)):
        problem = _head_problem(prev, want)
        if problem:
            last = gens[-1][0] if gens else LOG_NAME
            return bad(last, want.get("seq") if want else None, f"{problem} ({label})")
    return v


def _head_problem(last: dict[str, Any] | None, want: dict[str, Any] | None) -> str | None:
    """A head is a (seq, hash) the chain must reach (a head kept elsewhere earlier may be
    passed: records appended since); a matching seq with another hash is caught on the way."""
    if want is None:
        return None
    seq, digest = want.get("seq"), want.get("hash")
    if not isinstance(seq, int) or seq < 0:
        return "head is unreadable"
    if last is None:
        return f"the chain is empty but seq {seq} was written (truncated or replaced)"
    if last["seq"] < seq:
        return (f"the chain ends at seq {last['seq']} but seq {seq} was written "
                "(records removed from the end)")
    if not isinstance(digest, str):
        return "head is unreadable"
    return None


def verify_dir(audit_dir: Path, expect: dict[str, Any] | None = None) -> Verdict:
    gens = [(p.name, lines) for p, lines in ordered_generations(audit_dir)]
    return verify_lines(gens, read_head(audit_dir), expect)
