#!/usr/bin/env python3
"""INFRA_03: who holds the ports ARK needs, and what to do about it.

    ark ports check [--json]                                      (installed hosts)
    python3 ports.py --ports api=8101,redis=6379,metrics=9101 --json   (deploy preflight)

The deploy's Ansible preflight copies this one file to hosts where ARK is not installed yet, so
it MUST stay a standalone script: standard library only, no `ark_runtime` import at top level.

How: LISTEN sockets come from /proc/net/tcp and /proc/net/tcp6 (state 0A), each with the
socket inode and owner uid; the holding process is found by matching `socket:[inode]` among
/proc/<pid>/fd/* links, then named from /proc/<pid>/{comm,cmdline,cgroup}. Without root, other
users' fd tables cannot be read: the owner uid (always visible) then narrows it down to that
user's processes, which is enough to recognise redis-server run by the redis user.

Any listener on the port counts, whatever address it is bound to: a wildcard listener blocks
every address, and being conservative costs a message, not an outage.

Exit codes (ark_runtime/exitcodes.py, restated here because this file runs standalone):
0 every port free or held by ARK itself, 69 (UNAVAILABLE) something foreign holds a needed
port, 64 (USAGE) bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NoReturn

EXIT_OK = 0  # ExitCode.OK
EXIT_USAGE = 64  # ExitCode.USAGE
EXIT_FOREIGN = 69  # ExitCode.UNAVAILABLE
LISTEN = "0A"

# role -> (env variable, default port). Metrics are served by ARK processes too.
PORTS: dict[str, tuple[str, int]] = {
    "api": ("ARK_API_PORT", 8101),
    "redis": ("ARK_REDIS_PORT", 6379),
    "metrics": ("ARK_METRICS_PORT", 9101),
}


@dataclass
class Listener:
    port: int
    address: str
    inode: int
    uid: int


@dataclass
class Holder:
    pid: int | None
    comm: str | None
    cmdline: str | None
    user: str
    unit: str | None = None
    exact: bool = True  # False: inferred from the socket's owner uid, fd table not readable


@dataclass
class PortReport:
    role: str
    port: int
    env_var: str | None
    status: str  # "free" | "ours" | "foreign"
    holders: list[Holder] = field(default_factory=list)
    message: str = ""


# --- /proc parsing ---------------------------------------------------------------------------


def _hex_addr(raw: str) -> str:
    host, _ = raw.split(":")
    data = bytes.fromhex(host)
    if len(data) == 4:
        return ".".join(str(b) for b in data[::-1])
    # /proc prints IPv6 as four little-endian 32-bit words.
    words = [data[i : i + 4][::-1] for i in range(0, 16, 4)]
    full = b"".join(words).hex()
    return ":".join(full[i : i + 4] for i in range(0, 32, 4))


def parse_proc_net(text: str) -> list[Listener]:
    """LISTEN sockets in one /proc/net/tcp{,6} table."""
    out = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10 or cols[3] != LISTEN:
            continue
        port = int(cols[1].rsplit(":", 1)[1], 16)
        out.append(Listener(port, _hex_addr(cols[1]), int(cols[9]), int(cols[7])))
    return out


def listeners(proc: Path = Path("/proc")) -> list[Listener]:
    found = []
    for table in ("tcp", "tcp6"):
        try:
            found += parse_proc_net((proc / "net" / table).read_text())
        except OSError:
            continue  # no IPv6 on this kernel
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _pids(proc: Path) -> Iterable[int]:
    for entry in proc.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def socket_owners(inodes: set[int], proc: Path = Path("/proc")) -> dict[int, list[int]]:
    """inode -> pids holding it (a forked server shares one socket among several pids)."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    owners: dict[int, list[int]] = {}
    if not wanted:
        return owners
    for pid in _pids(proc):
        try:
            fds = os.listdir(proc / str(pid) / "fd")
        except OSError:
            continue  # another user's process, or gone
        for fd in fds:
            try:
                link = os.readlink(proc / str(pid) / "fd" / fd)
            except OSError:
                continue
            if link in wanted:
                owners.setdefault(wanted[link], []).append(pid)
    return owners


def _unit(proc: Path, pid: int) -> str | None:
    text = _read(proc / str(pid) / "cgroup") or ""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for part in reversed(path.split("/")):
            if part.endswith((".service", ".scope")):
                return part
    return None


def describe(pid: int, proc: Path = Path("/proc"), *, exact: bool = True) -> Holder:
    base = proc / str(pid)
    comm = (_read(base / "comm") or "").strip() or None
    raw = _read(base / "cmdline") or ""
    cmdline = " ".join(a for a in raw.split("\0") if a) or None
    try:
        user = _user(base.stat().st_uid)
    except OSError:
        user = "?"
    return Holder(pid, comm, cmdline, user, _unit(proc, pid), exact)


def _uid_processes(uid: int, proc: Path) -> list[int]:
    pids = []
    for pid in _pids(proc):
        try:
            if (proc / str(pid)).stat().st_uid == uid:
                pids.append(pid)
        except OSError:
            continue
    return pids


# --- ours or foreign -------------------------------------------------------------------------


def _ark_args(cmdline: str | None) -> list[str] | None:
    """What follows `ark` in `/opt/ark/venv/bin/ark api --x` or `python -m ark_runtime.cli
    api`; None if the process is not an ark command."""
    argv = (cmdline or "").split()
    for i, arg in enumerate(argv):
        if os.path.basename(arg) == "ark" or arg in ("ark_runtime.cli", "ark_runtime"):
            return argv[i + 1:]
    return None


def _ark_subcommand(cmdline: str | None) -> str | None:
    """'api' for `ark api`; '' for a bare `ark`; None if the process is not an ark command."""
    args = _ark_args(cmdline)
    return None if args is None else (args[0] if args else "")


def _serves_api(cmdline: str | None) -> bool:
    """`ark api [--options]` serves; `ark api hash-password` and other tools under it do not."""
    args = _ark_args(cmdline) or []
    return bool(args) and args[0] == "api" and all(a.startswith("-") for a in args[1:2])


def is_ours(role: str, holder: Holder) -> bool:
    unit = holder.unit or ""
    sub = _ark_subcommand(holder.cmdline)
    if role == "api":
        return _serves_api(holder.cmdline) or unit == "ark-api.service"
    if role == "redis":
        return holder.comm == "redis-server" or unit.startswith("redis-server")
    # metrics: any ARK process may serve them (an ark command, or one of ARK's units;
    # a unit merely *named* ark-something is not enough).
    return sub is not None or unit == "ark-api.service" or unit.startswith("ark-agent@")


def _fix(role: str, port: int, env_var: str | None, holders: list[Holder]) -> str:
    stops = []
    for h in holders:
        if h.unit and h.unit.endswith(".service"):
            stops.append(f"systemctl stop {h.unit}")
        if h.pid is not None:
            stops.append(f"kill {h.pid}")
    how = f"stop it ({' / '.join(dict.fromkeys(stops))})" if stops else "stop it"
    alt = f" or set {env_var} to a free port" if env_var else " or choose another port"
    return f"{how}{alt}"


def _who(h: Holder) -> str:
    name = h.comm or "unknown process"
    bits = [f"pid {h.pid}" if h.pid is not None else None, f"user {h.user}",
            f"unit {h.unit}" if h.unit else None,
            f"cmdline {h.cmdline!r}" if h.cmdline else None]
    guess = "" if h.exact else " (inferred from the socket owner; run as root to be sure)"
    return f"{name} ({', '.join(b for b in bits if b)}){guess}"


def check_ports(wanted: Mapping[str, int], proc: Path = Path("/proc"),
                env_vars: Mapping[str, str] | None = None) -> list[PortReport]:
    env_vars = env_vars if env_vars is not None else {r: v for r, (v, _) in PORTS.items()}
    socks = listeners(proc)
    owners = socket_owners({s.inode for s in socks if s.port in wanted.values()}, proc)
    reports = []
    for role, port in wanted.items():
        env_var = env_vars.get(role)
        here = [s for s in socks if s.port == port]
        if not here:
            reports.append(PortReport(role, port, env_var, "free", message=f"port {port} "
                                      f"({role}) is free"))
            continue
        holders: dict[int | None, Holder] = {}
        for sock in here:
            pids = owners.get(sock.inode)
            if pids:
                for pid in pids:
                    holders.setdefault(pid, describe(pid, proc))
                continue
            # fd table not readable: the uid is. Name that user's processes that look like
            # the holder's role, or say plainly that we cannot see it.
            cands = [describe(p, proc, exact=False) for p in _uid_processes(sock.uid, proc)]
            match = [c for c in cands if is_ours(role, c)]
            if match:
                for c in match:
                    holders.setdefault(c.pid, c)
            else:
                holders.setdefault(None, Holder(None, None, None, _user(sock.uid), exact=False))
        hs = list(holders.values())
        if all(is_ours(role, h) for h in hs):
            msg = f"port {port} ({role}) is held by ARK: " + "; ".join(_who(h) for h in hs)
            reports.append(PortReport(role, port, env_var, "ours", hs, msg))
        else:
            foreign = [h for h in hs if not is_ours(role, h)]
            msg = (f"port {port} ({role}) is held by " + "; ".join(_who(h) for h in foreign)
                   + f": {_fix(role, port, env_var, foreign)}")
            reports.append(PortReport(role, port, env_var, "foreign", foreign, msg))
    return reports


# --- command line ----------------------------------------------------------------------------


def ports_from_env(env: Mapping[str, str] | None = None) -> dict[str, int]:
    env = os.environ if env is None else env
    out = {}
    for role, (var, default) in PORTS.items():
        raw = env.get(var) or str(default)
        out[role] = _port(raw, var)
    return out


def _port(raw: str, what: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{what}: {raw!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{what}: {port} is outside 1-65535")
    return port


def parse_ports_arg(text: str) -> dict[str, int]:
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        role, sep, raw = item.partition("=")
        if not sep or not role.isidentifier():
            raise ValueError(f"--ports: expected role=port, got {item!r}")
        out[role] = _port(raw, f"--ports {role}")
    if not out:
        raise ValueError("--ports: no ports given")
    return out


def run(ports_arg: str | None, as_json: bool) -> int:
    try:
        wanted = parse_ports_arg(ports_arg) if ports_arg else ports_from_env()
    except ValueError as exc:
        print(f"ports: {exc}", file=sys.stderr)
        return EXIT_USAGE
    reports = check_ports(wanted)
    foreign = any(r.status == "foreign" for r in reports)
    if as_json:
        print(json.dumps({"ok": not foreign, "ports": [asdict(r) for r in reports]}, indent=2))
    else:
        for r in reports:
            print(("PORT IN USE: " if r.status == "foreign" else "") + r.message,
                  file=sys.stderr if r.status == "foreign" else sys.stdout)
    return EXIT_FOREIGN if foreign else EXIT_OK


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ports", help="role=port,... (default: ARK_API_PORT/ARK_REDIS_PORT/"
                   "ARK_METRICS_PORT, else 8101/6379/9101)")
    p.add_argument("--json", action="store_true", help="machine-readable report")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ports = sub.add_parser("ports", help="who holds the ports ARK needs (INFRA_03)")
    psub = ports.add_subparsers(dest="ports_command", required=True, metavar="ACTION")
    check = psub.add_parser("check", help="exit 69 when a foreign process holds a needed port")
    _add_args(check)
    check.set_defaults(func=lambda a: run(a.ports, a.json))


class _Parser(argparse.ArgumentParser):
    """ArkArgumentParser's behaviour (usage error = 64) without importing ark_runtime."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="ports.py", description=__doc__.split("\n")[0])
    _add_args(parser)
    args = parser.parse_args(argv)
    return run(args.ports, args.json)


if __name__ == "__main__":
    sys.exit(main())
