"""`ark errors ...` and `ark dead ...`: the operator's view of the error bus and dead letters.

Exit codes (ark_runtime/exitcodes.py): 0 ok, 1 `errors status` found a pause, 69 Redis
unreachable or refusing us, 78 bad settings; each failure is one sentence on stderr.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import sys
from collections.abc import Callable

import redis

from ark_runtime.exitcodes import ExitCode
from ark_runtime.host.audit.log import audited_command
from ark_runtime.settings import SettingsError

MAX_COUNT = 100_000


def _count(raw: str) -> int:
    """-n: how many entries to show; checked here so Redis never sees a bad count."""
    text = raw.strip()
    if not (text.isascii() and text.isdigit()):  # int() would also take "1_0", "+1", "١"
        raise argparse.ArgumentTypeError(f"must be a whole number, got {raw[:40]!r}")
    value = int(text)
    if not 0 < value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_COUNT}, got {value}")
    return value


def _checked_count(args: argparse.Namespace) -> int:
    # argparse (3.11) drops a literal "--" value before calling the type: `-n=--` gives [].
    if not isinstance(args.n, int):
        print("ark: argument -n: must be a whole number", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE)
    return args.n


def register(sub: argparse._SubParsersAction) -> None:
    errors = sub.add_parser("errors", help="error bus: recent errors, pauses, clear a pause")
    esub = errors.add_subparsers(dest="errors_command", required=True, metavar="ACTION")
    st = esub.add_parser("status", help="show active pauses (exit 1 while paused)")
    st.set_defaults(func=_status)
    ls = esub.add_parser("list", help="recent errors and pause/resume events")
    ls.add_argument("-n", type=_count, default=20)
    ls.set_defaults(func=_list)
    cl = esub.add_parser("clear", help="clear pauses so producers resume")
    cl.add_argument("--origin", action="append", help="only this origin (repeatable)")
    cl.add_argument("--reason", default="", help="why it is safe to resume (recorded)")
    cl.set_defaults(func=_clear)
    dead = sub.add_parser("dead", help="list dead-lettered messages with their reasons")
    dead.add_argument("-n", type=_count, default=20)
    dead.set_defaults(func=_dead)


def _operator_errors(command: Callable[[argparse.Namespace], int]):
    """Expected failures become one sentence and an exit code, never a traceback."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except SettingsError as exc:
            print(f"ark: bad settings: {exc}", file=sys.stderr)
            return ExitCode.CONFIG
        except redis.AuthenticationError:
            print("ark: Redis refused the password; check ARK_REDIS_PASSWORD", file=sys.stderr)
            return ExitCode.UNAVAILABLE
        except redis.RedisError as exc:
            print(f"ark: cannot reach Redis ({type(exc).__name__}); check ARK_REDIS_HOST/PORT "
                  "and that redis-server is running", file=sys.stderr)
            return ExitCode.UNAVAILABLE

    return run


def _client():
    from ark_runtime.bus.streams import connect

    return connect()


@_operator_errors
def _status(args: argparse.Namespace) -> int:
    from ark_runtime.bus.errors import pauses

    current = pauses(_client())
    if not current:
        print("no pause: producers are running")
        return ExitCode.OK
    for origin, rec in current.items():
        print(f"PAUSED by {origin} since {rec.get('since')}: {', '.join(rec.get('agents', []))} "
              f"halted; reason: {rec.get('reason')} (set by {rec.get('by')})")
    print("clear with: ark errors clear --reason '...'")
    return ExitCode.FAILURE


@_operator_errors
def _list(args: argparse.Namespace) -> int:
    from ark_runtime.bus.errors import recent

    for env in recent(_client(), _checked_count(args)):
        p = env.payload
        detail = p.get("message") or p.get("reason") or ""
        label = p.get("severity") or env.type
        print(f"{env.timestamp.isoformat()} {env.from_agent:<8} {label:<13} "
              f"{p.get('error', env.type)}: {detail}  [{env.correlation_id}]")
    return ExitCode.OK


@_operator_errors
@audited_command("errors.clear", lambda a: {"origin": a.origin, "reason": a.reason})
def _clear(args: argparse.Namespace) -> int:
    from ark_runtime.bus.errors import ErrorBus

    by = f"operator:{getpass.getuser()}"
    cleared = ErrorBus(_client(), "operator").clear(args.origin, by=by, reason=args.reason)
    if not cleared:
        print("nothing to clear")
        return ExitCode.OK
    print(f"cleared pause set by {', '.join(cleared)}; producers resume")
    return ExitCode.OK


@_operator_errors
def _dead(args: argparse.Namespace) -> int:
    from ark_runtime.bus.streams import DEAD_STREAM

    entries = _client().xrevrange(DEAD_STREAM, count=_checked_count(args))
    for eid, f in reversed(entries):
        print(json.dumps({"id": eid, **f}, sort_keys=True))
    if not entries:
        print("dead-letter stream is empty", file=sys.stderr)
    return ExitCode.OK
