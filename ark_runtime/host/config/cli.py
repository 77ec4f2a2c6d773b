"""`ark config record|list|diff|rollback|prune`: the host's config versions (GOV_02)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ark_runtime.exitcodes import ArkArgumentParser, ExitCode
from ark_runtime.host.audit.log import AuditError, actor, audited
from ark_runtime.host.config.history import (
    HistoryError,
    Tracked,
    diff_versions,
    load_meta,
    record_version,
    versions,
)
from ark_runtime.host.config.rollback import DEFAULT_KEEP, prune, rollback


def _fail(what: str, exc: Exception) -> int:
    print(f"ark config {what}: {exc}", file=sys.stderr)
    if isinstance(exc, PermissionError):
        return ExitCode.NOPERM
    return ExitCode.DATAERR if isinstance(exc, HistoryError) else ExitCode.FAILURE


def _cmd_record(args: argparse.Namespace) -> int:
    t = Tracked.from_env()
    try:
        n, new = record_version(t, who=args.who or actor(), commit=args.commit,
                                correlation_id=args.correlation_id, reason=args.reason)
        if new:
            pruned = prune(t, args.keep)
    except (HistoryError, OSError) as exc:
        return _fail("record", exc)
    doc: dict[str, Any] = {"version": n, "new": new}
    if new:
        doc["pruned"] = pruned
    print(json.dumps(doc) if args.json else
          (f"recorded config version {n}" if new else f"unchanged: config version {n}"))
    return ExitCode.OK


def _summary(t: Tracked, n: int) -> dict[str, Any]:
    m = load_meta(t, n)
    return {k: m.get(k) for k in ("version", "created_at", "who", "commit", "reason",
                                  "venv", "lock_sha256", "correlation_id")} | {
        "files": len(m.get("file_sha256", {}))}


def _cmd_list(args: argparse.Namespace) -> int:
    t = Tracked.from_env()
    try:
        rows = [_summary(t, n) for n in versions(t)][-args.limit:] if args.limit else \
            [_summary(t, n) for n in versions(t)]
    except (HistoryError, OSError) as exc:
        return _fail("list", exc)
    for r in rows:
        if args.json:
            print(json.dumps(r, sort_keys=True))
        else:
            commit = (r["commit"] or "?")[:10]
            print(f"{r['version']:>4}  {r['created_at']}  {r['who']:<20} {commit:<10} "
                  f"{r['files']:>3} files  {r['reason']}")
    if not rows and not args.json:
        print("no config versions recorded yet", file=sys.stderr)
    return ExitCode.OK


def _cmd_diff(args: argparse.Namespace) -> int:
    try:
        sys.stdout.write(diff_versions(Tracked.from_env(), args.a, args.b))
    except (HistoryError, OSError) as exc:
        return _fail("diff", exc)
    return ExitCode.OK


def _cmd_rollback(args: argparse.Namespace) -> int:
    t = Tracked.from_env()
    try:
        with audited("config.rollback", {"to": args.to}) as rec:
            res = rollback(t, args.to, who=args.who or actor(),
                           correlation_id=rec.correlation_id)
            rec.detail = f"new version {res.new_version}; changed {len(res.changed)} file(s)"
    except (HistoryError, AuditError, OSError) as exc:
        return _fail("rollback", exc)
    doc = {"to": res.target, "new_version": res.new_version, "changed": res.changed,
           "removed": res.removed, "venv_changed": res.venv_changed,
           "restarted": res.restarted, "notes": res.notes}
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"rolled back to config version {res.target} (recorded as version "
              f"{res.new_version}): {len(res.changed)} file(s) written, {len(res.removed)} "
              f"removed, venv {'switched' if res.venv_changed else 'unchanged'}; restarted: "
              f"{', '.join(res.restarted) or 'nothing'}")
        for n in res.notes:
            print(f"note: {n}")
    return ExitCode.OK


def _cmd_prune(args: argparse.Namespace) -> int:
    try:
        print(json.dumps(prune(Tracked.from_env(), args.keep)))
    except (HistoryError, OSError) as exc:
        return _fail("prune", exc)
    return ExitCode.OK


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: want a version number >= 1")
    return n


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cfg = sub.add_parser("config", help="versions of the deployed config (GOV_02)")
    csub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION",
                                parser_class=ArkArgumentParser)  # usage errors exit 64
    rec = csub.add_parser("record", help="record a version if the config changed")
    rec.add_argument("--who")
    rec.add_argument("--commit", help="the control repo's commit")
    rec.add_argument("--correlation-id")
    rec.add_argument("--reason", default="deploy")
    rec.add_argument("--keep", type=_positive, default=DEFAULT_KEEP)
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=_cmd_record)
    lst = csub.add_parser("list", help="recorded versions, oldest first")
    lst.add_argument("--limit", type=int, help="only the newest N")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=_cmd_list)
    dif = csub.add_parser("diff", help="unified diff between two versions (secrets masked)")
    dif.add_argument("a", type=_positive)
    dif.add_argument("b", type=_positive)
    dif.set_defaults(func=_cmd_diff)
    rb = csub.add_parser("rollback", help="put version N's files and venv back")
    rb.add_argument("to", type=_positive)
    rb.add_argument("--who")
    rb.add_argument("--json", action="store_true")
    rb.set_defaults(func=_cmd_rollback)
    pr = csub.add_parser("prune", help="drop old versions, unused venvs, stale wheels")
    pr.add_argument("--keep", type=_positive, default=DEFAULT_KEEP)
    pr.set_defaults(func=_cmd_prune)
