"""`ark audit show|verify|record|head|ingest`: the host's audit chain from the command line."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from ark_runtime.exitcodes import ArkArgumentParser, ExitCode
from ark_runtime.host.audit.chain import (
    RESULTS,
    UNREADABLE,
    iter_records,
    read_head,
    verify_dir,
)
from ark_runtime.host.audit.log import AuditError, AuditLog
from ark_runtime.host.layout import resolve as resolve_layout

_SPAN = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_NAME = re.compile(r"^[A-Za-z0-9_.:@/-]{1,200}$")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`10m`, `2h`, `7d`, `1w` ago, or an ISO-8601 time (UTC when no zone is given)."""
    now = now or datetime.now(UTC)
    m = _SPAN.match(text.strip())
    if m:
        return now - timedelta(**{_UNITS[m[2]]: int(m[1])})
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since {text!r}: use a span like 10m, 2h, 7d or an ISO time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _ts(rec: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(rec.get("ts", "")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def select(records: list[dict[str, Any]], *, since: datetime | None = None,
           action: str | None = None, who: str | None = None,
           limit: int | None = None) -> list[dict[str, Any]]:
    """Records matching every filter, in time order, the newest `limit` of them. `action`
    matches the name or its prefix before a dot (`snapshot` matches `snapshot.restore`)."""
    out = [r for r in records
           if (since is None or _ts(r) >= since)
           and (action is None or r.get("action") == action
                or str(r.get("action", "")).startswith(action + "."))
           and (who is None or who in str(r.get("who", "")))]
    out.sort(key=_ts)
    return out[-limit:] if limit else out


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Control characters shown escaped (\\x1b), so a record cannot drive the terminal
    (clear the screen, move the cursor, rewrite earlier lines)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def format_record(r: dict[str, Any], host_column: bool = False) -> str:
    dur = "" if r.get("duration") is None else f" {r['duration']:.2f}s"
    args = " ".join(f"{k}={v}" for k, v in sorted((r.get("args") or {}).items()))
    where = f"{r.get('where', '?'):<14} " if host_column else ""
    detail = f" ({r['detail']})" if r.get("detail") else ""
    return printable(
        f"{r.get('ts', '?')} {where}{r.get('who', '?'):<20} {r.get('action', '?'):<22} "
        f"{r.get('result', '?'):<8}{dur} {args}{detail} [{str(r.get('correlation_id'))[:12]}]"
    ).rstrip()


def _cmd_show(args: argparse.Namespace) -> int:
    log = AuditLog.from_env()
    try:
        records = [r for _f, r in iter_records(log.directory)]
    except PermissionError:
        print(f"ark audit show: cannot read {log.directory}: run as root", file=sys.stderr)
        return ExitCode.NOPERM
    rows = select(records, since=args.since, action=args.action, who=args.who,
                  limit=args.limit)
    for r in rows:
        print(json.dumps(r, sort_keys=True) if args.json else format_record(r))
    if not rows and not args.json:
        print("no audit records match", file=sys.stderr)
    return ExitCode.OK


def _cmd_verify(args: argparse.Namespace) -> int:
    log = AuditLog.from_env()
    expect = None
    if args.expect_seq is not None:
        expect = {"seq": args.expect_seq, "hash": args.expect_hash}
    try:
        v = verify_dir(log.directory, expect)
    except PermissionError:
        print(f"ark audit verify: cannot read {log.directory}: run as root", file=sys.stderr)
        return ExitCode.NOPERM
    except UNREADABLE as exc:  # a .gz generation that does not decompress
        print(f"ark audit verify: a generation in {log.directory} is unreadable: {exc}",
              file=sys.stderr)
        return ExitCode.DATAERR
    if args.json:
        print(json.dumps(v.as_dict(), sort_keys=True))
    elif v.ok:
        span = "empty" if v.records == 0 else f"seq {v.first_seq}..{v.last_seq}"
        print(f"audit chain ok: {v.records} records in {v.files} file(s), {span}"
              + "".join(f"; {n}" for n in v.notes))
    else:
        print(f"AUDIT CHAIN BROKEN at {v.problem}", file=sys.stderr)
    return ExitCode.OK if v.ok else ExitCode.DATAERR


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not _NAME.match(key):
        raise argparse.ArgumentTypeError(f"--arg {text!r}: want NAME=VALUE")
    return key, value


def _name(text: str) -> str:
    if not _NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: letters, digits and _.:@/- only, at most 200 characters")
    return text


def _cmd_record(args: argparse.Namespace) -> int:
    try:
        rec = AuditLog.from_env().append(
            action=args.action, result=args.result, args=dict(args.arg or []),
            who=args.who, where=args.where, duration=args.duration,
            correlation_id=args.correlation_id, detail=args.detail)
    except AuditError as exc:
        print(f"ark audit record: {exc}", file=sys.stderr)
        return ExitCode.NOPERM if "Permission" in str(exc) else ExitCode.UNAVAILABLE
    print(json.dumps({"seq": rec["seq"], "hash": rec["hash"], "ts": rec["ts"]}))
    return ExitCode.OK


def _cmd_head(args: argparse.Namespace) -> int:
    try:
        head = read_head(AuditLog.from_env().directory)
    except PermissionError:
        print("ark audit head: cannot read the audit directory: run as root", file=sys.stderr)
        return ExitCode.NOPERM
    print(json.dumps(head))
    return ExitCode.OK


def _cmd_ingest(args: argparse.Namespace) -> int:
    import pwd

    from ark_runtime.host.audit.ingest import (
        API_UNIT,
        QUARANTINE_NAME,
        Trust,
        ingest_journal,
    )

    log = AuditLog.from_env()
    user = args.api_user or resolve_layout().user
    try:
        trust = Trust(unit=args.api_unit or API_UNIT, uid=pwd.getpwnam(user).pw_uid)
    except KeyError:
        print(f"ark audit ingest: no such user {user!r} (--api-user)", file=sys.stderr)
        return ExitCode.CONFIG
    try:
        res = ingest_journal(log, trust, follow=args.follow)
    except PermissionError:
        print(f"ark audit ingest: cannot move records from the journal into {log.directory}: "
              "run as root", file=sys.stderr)
        return ExitCode.NOPERM
    except (AuditError, OSError) as exc:
        print(f"ark audit ingest: stopped, the journal keeps what is left: {exc}",
              file=sys.stderr)
        return ExitCode.UNAVAILABLE
    if res is None:
        print("ark audit ingest: ark-audit-ingest.service holds the ingest lock and takes "
              "each console record as it reaches the journal", file=sys.stderr)
        return ExitCode.OK
    if args.json:
        print(json.dumps({"ingested": res.ingested, "refused": res.refused, "gaps": res.gaps,
                          "problems": res.problems}, sort_keys=True))
    else:
        kept = (f"; {res.refused} refused entr(y/ies) kept in {log.directory / QUARANTINE_NAME}"
                if res.refused else "")
        gaps = f"; {res.gaps} gap(s) recorded" if res.gaps else ""
        print(f"ingested {res.ingested} console record(s) from the journal{kept}{gaps}")
    return ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = sub.add_parser("audit", help="the admin audit chain (SEC_03, GOV_01)")
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION",
                                parser_class=ArkArgumentParser)  # usage errors exit 64
    show = asub.add_parser("show", help="records in time order, filtered")
    show.add_argument("--since", type=parse_since, help="10m, 2h, 7d or an ISO time")
    show.add_argument("--action", type=_name, help="this action or its prefix (snapshot)")
    show.add_argument("--who", help="records whose actor contains this")
    show.add_argument("--limit", type=int, help="only the newest N")
    show.add_argument("--json", action="store_true", help="one JSON record per line")
    show.set_defaults(func=_cmd_show)
    ver = asub.add_parser("verify", help="check the chain across rotations (exit 65 if broken)")
    ver.add_argument("--json", action="store_true")
    ver.add_argument("--expect-seq", type=int, help="a head kept elsewhere: its seq ...")
    ver.add_argument("--expect-hash", help="... and its hash")
    ver.set_defaults(func=_cmd_verify)
    rec = asub.add_parser("record", help="append one record (for the control node, scripts)")
    rec.add_argument("--action", type=_name, required=True)
    rec.add_argument("--result", choices=RESULTS, required=True)
    rec.add_argument("--arg", type=_kv, action="append", help="NAME=VALUE (repeatable)")
    rec.add_argument("--who", help="the operator (default: $ARK_ACTOR, sudo user, login)")
    rec.add_argument("--where", help="default: this host's name")
    rec.add_argument("--duration", type=float, help="seconds the action took")
    rec.add_argument("--correlation-id", type=_name, help="ties records of one action")
    rec.add_argument("--detail", help="why it failed, what was partial")
    rec.set_defaults(func=_cmd_record)
    head = asub.add_parser("head", help="seq and hash of the newest record (JSON)")
    head.set_defaults(func=_cmd_head)
    ing = asub.add_parser("ingest", help="move the console's records from the journal into "
                          "the chain (root; ark-audit-ingest.service follows the journal)")
    ing.add_argument("--follow", action="store_true",
                     help="keep reading as records arrive (the service)")
    ing.add_argument("--api-unit", type=_name, help="the API's unit (default ark-api.service)")
    ing.add_argument("--api-user", type=_name, help="the API's user (default $ARK_USER, ark)")
    ing.add_argument("--json", action="store_true")
    ing.set_defaults(func=_cmd_ingest)
