"""`ark errors ...` and `ark dead ...`: the operator's view of the error bus and dead letters."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from ark_runtime.host.audit import audited_command


def register(sub: argparse._SubParsersAction) -> None:
    errors = sub.add_parser("errors", help="error bus: recent errors, pauses, clear a pause")
    esub = errors.add_subparsers(dest="errors_command", required=True, metavar="ACTION")
    st = esub.add_parser("status", help="show active pauses (exit 3 while paused)")
    st.set_defaults(func=_status)
    ls = esub.add_parser("list", help="recent errors and pause/resume events")
    ls.add_argument("-n", type=int, default=20)
    ls.set_defaults(func=_list)
    cl = esub.add_parser("clear", help="clear pauses so producers resume")
    cl.add_argument("--origin", action="append", help="only this origin (repeatable)")
    cl.add_argument("--reason", default="", help="why it is safe to resume (recorded)")
    cl.set_defaults(func=_clear)
    dead = sub.add_parser("dead", help="list dead-lettered messages with their reasons")
    dead.add_argument("-n", type=int, default=20)
    dead.set_defaults(func=_dead)


def _client():
    from ark_runtime.bus.streams import connect

    return connect()


def _status(args: argparse.Namespace) -> int:
    from ark_runtime.bus.errors import pauses

    current = pauses(_client())
    if not current:
        print("no pause: producers are running")
        return 0
    for origin, rec in current.items():
        print(f"PAUSED by {origin} since {rec.get('since')}: {', '.join(rec.get('agents', []))} "
              f"halted; reason: {rec.get('reason')} (set by {rec.get('by')})")
    print("clear with: ark errors clear --reason '...'")
    return 3


def _list(args: argparse.Namespace) -> int:
    from ark_runtime.bus.errors import recent

    for env in recent(_client(), args.n):
        p = env.payload
        detail = p.get("message") or p.get("reason") or ""
        label = p.get("severity") or env.type
        print(f"{env.timestamp.isoformat()} {env.from_agent:<8} {label:<13} "
              f"{p.get('error', env.type)}: {detail}  [{env.correlation_id}]")
    return 0


@audited_command("errors.clear", lambda a: {"origin": a.origin, "reason": a.reason})
def _clear(args: argparse.Namespace) -> int:
    from ark_runtime.bus.errors import ErrorBus

    by = f"operator:{getpass.getuser()}"
    cleared = ErrorBus(_client(), "operator").clear(args.origin, by=by, reason=args.reason)
    if not cleared:
        print("nothing to clear")
        return 0
    print(f"cleared pause set by {', '.join(cleared)}; producers resume")
    return 0


def _dead(args: argparse.Namespace) -> int:
    from ark_runtime.bus.streams import DEAD_STREAM

    entries = _client().xrevrange(DEAD_STREAM, count=args.n)
    for eid, f in reversed(entries):
        print(json.dumps({"id": eid, **f}, sort_keys=True))
    if not entries:
        print("dead-letter stream is empty", file=sys.stderr)
    return 0
