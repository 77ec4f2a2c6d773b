"""SEC_03 (host side): append who/what/when/where/result records to the audit chain.

    with audited("snapshot.restore", {"id": snap_id}) as rec:   # writes `started` now
        ...                                                     # then ok / failed / partial

The log is `$ARK_LOG_DIR/audit/audit.log` (layout.audit_dir). Written by root: the directory
is 0700 and the file 0600, so the ARK services (user ark) can neither read nor rewrite it.
Appends are serialised by a flock on `audit.lock` and each record is one O_APPEND write
followed by fsync, then the head (`head.json`: seq + hash of the newest record) is replaced
atomically. A crash between the two leaves the head one behind, which the next append sees
(the file's last record links to the head) and adopts. A torn last line (crash mid-write) is
cut back to the last newline before the next record is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import pwd
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ark_runtime import redact as shared_redact
from ark_runtime import settings
from ark_runtime.host import layout
from ark_runtime.host.atomic import atomic_write_text, fsync_dir
from ark_runtime.host.audit.chain import (
    GENESIS,
    HEAD_NAME,
    LOG_NAME,
    RESULTS,
    line_of,
    ordered_generations,
    read_head,
    seal,
)

MAX_TEXT = shared_redact.MAX_TEXT


class AuditError(RuntimeError):
    """The audit log cannot be written; the message says which file and why."""


def actor(env: Mapping[str, str] | None = None) -> str:
    """Who acts: $ARK_ACTOR (the control node's operator), else the person behind sudo,
    else the login name, else the uid's name."""
    if env is not None:  # a given environment (tests, a host command's own)
        for var in ("ARK_ACTOR", *settings.LOGIN_VARIABLES):
            if env.get(var):
                return env[var]
    else:
        who = settings.declared().get("ARK_ACTOR") or settings.login_name()
        if who:
            return who
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid:{os.getuid()}"


def redact(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """The value with secrets masked (ark_runtime/redact.py), the secret variables' values
    taken from this process's environment unless `env` is given."""
    return shared_redact.redact(
        value, settings.environment_where(shared_redact.is_secret_name) if env is None else env)


def _env_correlation_id() -> str:
    """The control node's action id (ARK_CORRELATION_ID), else a fresh one."""
    return settings.declared().get("ARK_CORRELATION_ID") or uuid.uuid4().hex


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class AuditLog:
    directory: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuditLog:
        return cls(layout.audit_dir(env))

    @property
    def path(self) -> Path:
        return self.directory / LOG_NAME

    def _prepare(self) -> None:
        if not self.directory.exists():
            self.directory.mkdir(parents=True, mode=0o700)
            fsync_dir(self.directory.parent)
        st = self.directory.stat()
        if os.geteuid() == 0 and st.st_uid != 0:
            raise AuditError(f"{self.directory} is owned by uid {st.st_uid}, not root: "
                             "refusing to write an audit chain someone else controls")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / "audit.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _tail(self) -> dict[str, Any] | None:
        """The live file's last complete record; a torn last line is cut off first."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return None
            fh.seek(max(0, size - 65536))
            chunk = fh.read()
            if not chunk.endswith(b"\n"):
                keep = size - len(chunk) + chunk.rfind(b"\n") + 1
                print(f"ark audit: cut a torn last line off {self.path} ({size - keep} bytes)",
                      file=sys.stderr)
                fh.truncate(keep)
                os.fsync(fh.fileno())
                chunk = chunk[: chunk.rfind(b"\n") + 1]
            lines = chunk.rstrip(b"\n").split(b"\n")
            try:
                rec = json.loads(lines[-1]) if lines[-1] else None
            except ValueError:
                return None
            return rec if isinstance(rec, dict) else None

    def _previous(self) -> tuple[int, str, bool]:
        """(next seq, prev hash, starts a generation) under the lock."""
        head = read_head(self.directory)
        if head is not None and not (isinstance(head.get("seq"), int) and head["seq"] >= 0):
            head = None  # unreadable: fall back to what is on disk (verify reports it)
        tail = self._tail()
        if tail is not None and head is not None:
            lagging = tail.get("seq") == head.get("seq", -2) + 1 and \
                tail.get("prev_hash") == head.get("hash")
            last = tail if lagging else head  # a mismatch stays visible to verify
            return last["seq"] + 1, last["hash"], False
        if tail is not None:
            return tail["seq"] + 1, tail["hash"], False
        if head is not None:
            return head["seq"] + 1, head["hash"], True
        # No head (first record, or its file was lost): the newest record on disk.
        last = None
        for _path, lines in ordered_generations(self.directory):
            for ln in lines:
                if ln.record is not None and isinstance(ln.record.get("seq"), int):
                    last = ln.record
        if last is None:
            return 0, GENESIS, True
        return last["seq"] + 1, last["hash"], True

    def append(self, *, action: str, result: str, args: Mapping[str, Any] | None = None,
               who: str | None = None, where: str | None = None,
               duration: float | None = None, correlation_id: str | None = None,
               detail: str | None = None) -> dict[str, Any]:
        if result not in RESULTS:
            raise AuditError(f"result must be one of {', '.join(RESULTS)}, not {result!r}")
        if not action or len(action) > 200:
            raise AuditError("action must be a non-empty name of at most 200 characters")
        try:
            self._prepare()
            with self._locked():
                seq, prev_hash, gen_start = self._previous()
                record = seal({
                    "seq": seq, "prev_hash": prev_hash, "ts": _now(),
                    "who": redact(who or actor()), "action": action,
                    "args": redact(dict(args or {})), "where": where or socket.gethostname(),
                    "result": result,
                    "duration": None if duration is None else round(float(duration), 6),
                    "correlation_id": correlation_id or _env_correlation_id(),
                    "detail": None if detail is None else redact(detail),
                    "gen_start": gen_start,
                })
                self._write(record)
                return record
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path}: {exc.strerror or exc}"
                             ) from None

    def _write(self, record: dict[str, Any]) -> None:
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if os.geteuid() == 0 and os.fstat(fd).st_uid != 0:
                os.fchown(fd, 0, 0)  # whoever made it (a restore, a bad `create`): root's now
            os.fchmod(fd, 0o600)
            os.write(fd, line_of(record))  # one write: O_APPEND keeps it whole
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(self.directory)
        atomic_write_text(self.directory / HEAD_NAME,
                          json.dumps({"seq": record["seq"], "hash": record["hash"],
                                      "ts": record["ts"]}) + "\n", mode=0o600)


class Audited:
    """The open record of one action: set `result` to "partial" or add `detail` before
    the block ends; an exception makes it "failed"."""

    def __init__(self, log: AuditLog, action: str, args: Mapping[str, Any], who: str | None,
                 correlation_id: str | None):
        self.log, self.action, self.args, self.who = log, action, dict(args), who
        self.correlation_id = correlation_id or _env_correlation_id()
        self.result: str | None = None
        self.detail: str | None = None

    def finish(self, result: str, duration: float, detail: str | None = None) -> None:
        self.log.append(action=self.action, result=result, args=self.args, who=self.who,
                        duration=duration, correlation_id=self.correlation_id,
                        detail=detail or self.detail)


@contextlib.contextmanager
def audited(action: str, args: Mapping[str, Any] | None = None, *, who: str | None = None,
            correlation_id: str | None = None, log: AuditLog | None = None) -> Iterator[Audited]:
    """`started` before the block, then ok / partial / failed (an exception or Ctrl+C is
    recorded as failed and re-raised). If `started` cannot be written the action does not
    run: an admin action nobody can account for is refused."""
    rec = Audited(log or AuditLog.from_env(), action, args or {}, who, correlation_id)
    rec.log.append(action=action, result="started", args=rec.args, who=who,
                   correlation_id=rec.correlation_id)
    t0 = time.monotonic()
    try:
        yield rec
    except BaseException as exc:
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else \
            f"{type(exc).__name__}: {exc}"
        rec.finish("failed", time.monotonic() - t0, why)
        raise
    rec.finish(rec.result or "ok", time.monotonic() - t0)


def audited_command(action: str, args_of: Callable[[Any], Mapping[str, Any]] = lambda a: {},
                    when: Callable[[Any], bool] = lambda a: True):
    """Decorate an `ark` subcommand (args -> exit code): recorded when `when(args)`; exit 0
    is ok, anything else failed. Refuses (exit 77) when the record cannot be written."""

    def wrap(fn: Callable[[Any], int]) -> Callable[[Any], int]:
        @functools.wraps(fn)
        def run(args: Any) -> int:
            if not when(args):
                return fn(args)
            code: int | None = None
            try:
                with audited(action, args_of(args)) as rec:
                    code = fn(args)
                    if code != 0:
                        rec.result, rec.detail = "failed", f"exit {code}"
                return code
            except AuditError as exc:
                done = "it ran, but its result is not recorded" if code is not None else \
                    "nothing was done (an admin action must be recorded; run it as root)"
                print(f"ark: {exc}; {done}", file=sys.stderr)
                return 77  # ExitCode.NOPERM

        return run

    return wrap
