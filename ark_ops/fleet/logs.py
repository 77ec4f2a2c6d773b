"""`invoke logs` (LOG_02): every host's ARK JSON logs as one stream, in timestamp order.

Each host is read over SSH (the system `ssh` client, with the inventory's key and pinned
known_hosts, BatchMode). Without --follow: the current log files are read once, filtered
and merged by time. With --follow: one `tail -F` per host; lines are held back for a short
reorder window so hosts interleave in time order, then printed (delay bounded by the
window plus the SSH hop). The remote tail lives only as long as our SSH channel: it is
killed when its stdin closes, so Ctrl+C (or this process dying) leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from ark_ops.errors import OpsError
from ark_ops.fleet.ssh import CONNECT_TIMEOUT, FleetHost

LOG_DIR = "/var/log/ark"
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
AGENT_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_SINCE_RE = re.compile(r"^(\d{1,6})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_COLORS = ("36", "35", "33", "32", "34", "96", "95", "93")
_LEVEL_COLORS = {"warning": "33", "error": "31", "critical": "1;31", "debug": "2"}


class UsageError(OpsError):
    """A bad option value; the message names the option."""

    exit_code = 64  # ExitCode.USAGE


@dataclass(frozen=True)
class Filters:
    agent: str | None = None
    level: int = 0
    grep: re.Pattern[str] | None = None
    since: datetime | None = None

    @classmethod
    def parse(cls, agent: str = "", level: str = "", grep: str = "", since: str = "",
              now: datetime | None = None) -> Filters:
        if agent and not AGENT_RE.match(agent):
            raise UsageError(f"--agent {agent!r}: expected an agent name such as kyle or hrm")
        if level and level.lower() not in LEVELS:
            raise UsageError(f"--level {level!r}: expected one of {', '.join(LEVELS)}")
        try:
            pattern = re.compile(grep) if grep else None
        except re.error as exc:
            raise UsageError(f"--grep {grep!r}: not a regular expression ({exc})") from None
        return cls(agent or None, LEVELS[level.lower()] if level else 0, pattern,
                   parse_since(since, now) if since else None)

    def keep(self, rec: Record) -> bool:
        if self.agent and rec.agent != self.agent:
            return False
        if self.level and LEVELS.get(rec.level, 0) < self.level:
            return False
        if self.since and rec.ts < self.since:
            return False
        return not (self.grep and not self.grep.search(rec.text))


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`10m`, `2h`, `30s`, `1d` (ago) or an ISO 8601 time (UTC when no zone is given)."""
    now = now or datetime.now(UTC)
    m = _SINCE_RE.match(value.strip())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"--since {value!r}: expected a duration such as 10m, 2h, 1d "
                         "or an ISO time such as 2026-01-31T12:00") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Record:
    ts: datetime
    host: str
    agent: str
    level: str
    msg: str
    text: str  # the raw JSON line, as written
    raw: dict[str, Any]


def parse_record(host: str, text: str) -> Record | None:
    """One log line -> Record; None for anything that is not an ARK JSON record."""
    try:
        raw = json.loads(text)
        ts = datetime.fromisoformat(str(raw["ts"]))
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(raw, dict):
        return None
    agent = raw.get("agent") or ("heal" if str(raw.get("event", "")).startswith("heal")
                                 else "?")
    return Record(ts if ts.tzinfo else ts.replace(tzinfo=UTC), host, str(agent),
                  str(raw.get("level") or "info").lower(), str(raw.get("msg") or
                                                                raw.get("event") or ""),
                  text.rstrip("\n"), raw)


def log_paths(agent: str | None, log_dir: str = LOG_DIR) -> str:
    """The remote glob: one agent's file, or every ARK log (current generation)."""
    return f"{log_dir}/{agent}.log" if agent else f"{log_dir}/*.log"


def ssh_argv(host: FleetHost, command: str) -> list[str]:
    """ssh running `command` on the host, as root through sudo when the inventory says so
    (a become password is then read from the first line of stdin: see ssh_input)."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2",
            "-o", "LogLevel=ERROR", "-p", str(host.port)]
    if host.key_file:
        argv += ["-i", host.key_file]
    if host.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={host.known_hosts}",
                 "-o", "StrictHostKeyChecking=yes"]
    return [*argv, f"{host.user}@{host.address}",
            host.become.wrap(command, password_on_stdin=True)]


def ssh_input(host: FleetHost) -> str:
    """What to write first to ssh's stdin: the become password line, or nothing."""
    return host.become.stdin_prefix()


def read_command(agent: str | None, log_dir: str = LOG_DIR, rotated: bool = False) -> str:
    """The current files; with `rotated` (a --since window), every generation too, the
    compressed ones through zcat -f. Missing files (an agent that never ran there) are not
    errors."""
    if rotated:
        return f"zcat -f -- {log_paths(agent, log_dir)}* 2>/dev/null; true"
    return f"cat -- {log_paths(agent, log_dir)} 2>/dev/null; true"


def follow_command(agent: str | None, log_dir: str = LOG_DIR) -> str:
    # -s 0.1: GNU tail polls (once a second by default) instead of using inotify on file
    # systems it does not trust to report changes, overlayfs among them (the lab's hosts).
    # tail runs in the background; `cat` waits for our stdin to close (Ctrl+C, or this
    # process dying closes the SSH channel), then tail is killed: nothing stays behind.
    return ("sh -c " + shlex.quote(
        f"tail -q -n 0 -s 0.1 -F -- {log_paths(agent, log_dir)} 2>/dev/null & t=$!; "
        "cat >/dev/null; kill $t 2>/dev/null; wait $t 2>/dev/null; exit 0"))


class Printer:
    """`host agent level message` lines, colored on a TTY; or the raw JSON with --json."""

    def __init__(self, out: TextIO, raw_json: bool, color: bool | None = None) -> None:
        self.out = out
        self.raw_json = raw_json
        self.color = out.isatty() if color is None else color
        self._host_colors: dict[str, str] = {}

    def _paint(self, code: str | None, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color and code else text

    def print(self, rec: Record) -> None:
        if self.raw_json:
            self.out.write(rec.text + "\n")
        else:
            hc = self._host_colors.setdefault(
                rec.host, _COLORS[len(self._host_colors) % len(_COLORS)])
            cid = rec.raw.get("correlation_id")
            self.out.write(" ".join([
                rec.ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
                self._paint(hc, f"{rec.host:<12}"), f"{rec.agent:<6}",
                self._paint(_LEVEL_COLORS.get(rec.level), f"{rec.level:<8}"),
                rec.msg + (f"  [{cid}]" if cid else "")]) + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        print(self._paint("2", f"logs: {text}"), file=sys.stderr, flush=True)


def read_host(host: FleetHost, filters: Filters,
              run: Callable[..., subprocess.CompletedProcess] = subprocess.run
              ) -> list[Record]:
    command = read_command(filters.agent, rotated=filters.since is not None)
    proc = run(ssh_argv(host, command), capture_output=True, text=True,
               input=ssh_input(host), timeout=300)
    if proc.returncode != 0:
        detail = host.become.scrub(proc.stderr.strip()[-300:]) or f"ssh exit {proc.returncode}"
        raise OpsError(f"{host.name}: {detail}")
    recs = (parse_record(host.name, line) for line in proc.stdout.splitlines())
    # Files come one after another (and generations newest-first): order by time.
    return sorted((r for r in recs if r is not None and filters.keep(r)), key=lambda r: r.ts)


def merged(batches: Iterable[list[Record]]) -> list[Record]:
    """Every host's records in time order (host name breaks ties, stable per host)."""
    return sorted((r for batch in batches for r in batch), key=lambda r: (r.ts, r.host))


class Reorder:
    """Holds records for `window` seconds after they arrive, then releases them in
    timestamp order: lines from different hosts come out interleaved by time even though
    each SSH stream delivers them with its own delay. A record that arrives after later
    ones were released still comes out (late, never dropped)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._held: list[tuple[float, Record]] = []

    def push(self, rec: Record, arrived: float) -> None:
        self._held.append((arrived, rec))

    def release(self, now: float, everything: bool = False) -> list[Record]:
        if not self._held:
            return []
        cutoff = max((a for a, _ in self._held if everything or now - a >= self.window),
                     default=None)
        if cutoff is None:
            return []
        # Release whatever arrived by the cutoff, plus anything held that is older in time.
        ready = [r for a, r in self._held if a <= cutoff]
        newest = max(r.ts for r in ready)
        out = [r for a, r in self._held if a <= cutoff or r.ts <= newest]
        self._held = [(a, r) for a, r in self._held if not (a <= cutoff or r.ts <= newest)]
        return sorted(out, key=lambda r: (r.ts, r.host))


@dataclass
class _Stream:
    host: FleetHost
    proc: subprocess.Popen


def _pump(stream: _Stream, q: queue.Queue) -> None:
    assert stream.proc.stdout is not None
    for line in stream.proc.stdout:
        q.put((stream.host.name, line, time.monotonic()))
    stream.proc.wait()
    err = stream.proc.stderr.read().strip() if stream.proc.stderr else ""
    q.put((stream.host.name, None, f"exit {stream.proc.returncode}: {err[-200:]}".strip()))


def follow(hosts: list[FleetHost], filters: Filters, printer: Printer, window: float = 0.25,
           stop: threading.Event | None = None,
           popen: Callable[..., subprocess.Popen] = subprocess.Popen,
           log_dir: str = LOG_DIR) -> int:
    """Stream until Ctrl+C (or `stop`, or every host gone). Returns the number of hosts
    that dropped out."""
    stop = stop or threading.Event()
    q: queue.Queue = queue.Queue()
    streams = [_Stream(h, popen(ssh_argv(h, follow_command(filters.agent, log_dir)),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1))
               for h in hosts]
    for s in streams:
        if s.proc.stdin and ssh_input(s.host):
            s.proc.stdin.write(ssh_input(s.host))
            s.proc.stdin.flush()
        threading.Thread(target=_pump, args=(s, q), daemon=True).start()
    reorder, live, dropped = Reorder(window), {h.name for h in hosts}, 0
    try:
        while live and not stop.is_set():
            try:
                name, line, extra = q.get(timeout=window / 2)
            except queue.Empty:
                pass
            else:
                if line is None:
                    live.discard(name)
                    dropped += 1
                    printer.note(f"{name} dropped out ({extra}); the others keep streaming")
                else:
                    rec = parse_record(name, line)
                    if rec is not None and filters.keep(rec):
                        reorder.push(rec, extra)
            for rec in reorder.release(time.monotonic()):
                printer.print(rec)
    except KeyboardInterrupt:
        pass
    finally:
        for rec in reorder.release(time.monotonic(), everything=True):
            printer.print(rec)
        _close(streams)
    return dropped


def _close(streams: list[_Stream]) -> None:
    """Closing stdin ends the remote `cat`, which kills the remote tail; then the SSH
    client exits by itself. Terminate it only if it does not."""
    for s in streams:
        if s.proc.stdin:
            with contextlib.suppress(OSError):
                s.proc.stdin.close()
    deadline = time.monotonic() + 5
    for s in streams:
        try:
            s.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            s.proc.terminate()
            s.proc.wait(5)


def records_once(hosts: list[FleetHost], filters: Filters, printer: Printer
                 ) -> Iterator[Record]:
    """Read every host in parallel; an unreachable host is reported, the rest shown."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(32, len(hosts) or 1)) as pool:
        futures = {h.name: pool.submit(read_host, h, filters) for h in hosts}
    batches = []
    for name, fut in futures.items():
        try:
            batches.append(fut.result())
        except (OpsError, OSError, subprocess.TimeoutExpired) as exc:
            printer.note(f"{name} unreadable: {exc}")
    yield from merged(batches)


def run(inventory: str | None, limit: str | None, *, follow_mode: bool, agent: str,
        level: str, grep: str, since: str, raw_json: bool, out: TextIO = sys.stdout) -> int:
    from ark_ops.fleet.ssh import inventory_hosts
    from ark_ops.inventories import resolve_inventory

    filters = Filters.parse(agent, level, grep, since)
    hosts = inventory_hosts(resolve_inventory(inventory, bring_up=False), limit)
    printer = Printer(out, raw_json)
    try:
        if follow_mode:
            dropped = follow(hosts, filters, printer)
            return 1 if dropped == len(hosts) else 0
        for rec in records_once(hosts, filters, printer):
            printer.print(rec)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as cat and grep do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return 0


__all__ = ["Filters", "Printer", "Record", "Reorder", "UsageError", "follow", "merged",
           "parse_record", "parse_since", "run", "ssh_argv", "ssh_input"]
