"""`ark snapshot create|list|verify|restore|prune` (MEM_03). Expected failures are one sentence
on stderr and a code from ark_runtime/exitcodes.py, never a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ark_runtime.exitcodes import ExitCode
from ark_runtime.host import layout
from ark_runtime.host.audit.log import audited_command
from ark_runtime.host.snapshot.restore import on_shutdown, restore
from ark_runtime.host.snapshot.retention import Policy, prune
from ark_runtime.host.snapshot.snapshots import (
    REASONS,
    PolicyError,
    Snapshot,
    SnapshotError,
    SnapshotKeyError,
    create_snapshot,
    find,
    list_snapshots,
    verify_snapshot,
)


def exit_code_for(exc: SnapshotError) -> ExitCode:
    if isinstance(exc, SnapshotKeyError):
        return ExitCode.NOPERM
    if isinstance(exc, PolicyError):
        return ExitCode.CONFIG
    return ExitCode.FAILURE


def _fail(action: str, exc: SnapshotError) -> int:
    print(f"ark snapshot {action}: {exc}", file=sys.stderr)
    return exit_code_for(exc)


def _row(snap: Snapshot, verified: bool | None) -> dict[str, Any]:
    m = snap.manifest  # {} when the manifest is malformed: every value below is then None/0
    return {
        "id": snap.id,
        "created_at": m.get("created_at"),
        "reason": m.get("reason"),
        "size": sum(f["size"] for f in (m.get("files") or {}).values()),
        "runtime_version": m.get("runtime_version"),
        "verified": verified,
        "problems": snap.problems,
    }


def _cmd_create(args: argparse.Namespace) -> int:
    try:
        if args.on_shutdown:
            code, msg = on_shutdown()
            print(f"ark snapshot: {msg}")
            return code
        snap = create_snapshot(args.reason)
    except SnapshotError as exc:
        return _fail("create", exc)
    print(f"{snap.id} {snap.path} integrity={snap.manifest['integrity_check']}")
    if args.prune:
        return _do_prune(args, dry_run=False)
    return ExitCode.OK


def _cmd_list(args: argparse.Namespace) -> int:
    snaps = list_snapshots()
    if args.verify:
        for snap in snaps:
            verify_snapshot(snap)
    rows = [_row(s, (not s.problems) if args.verify else None) for s in snaps]
    if args.json:
        print(json.dumps(rows, indent=2))
        return ExitCode.OK
    for r in rows:
        state = {None: "", True: "verified", False: "CORRUPT"}[r["verified"]]
        print(f"{r['id']}  {r['created_at']}  {r['reason'] or '?':<11} {r['size']:>12}  {state}")
    return ExitCode.OK


def _cmd_verify(args: argparse.Namespace) -> int:
    try:
        snaps = [find(args.id)] if args.id else list_snapshots()
    except SnapshotError as exc:
        return _fail("verify", exc)
    bad = 0
    for snap in snaps:
        problems = verify_snapshot(snap)
        if problems:
            bad += 1
            for p in problems:
                print(f"{snap.id}: {p}", file=sys.stderr)
        else:
            print(f"{snap.id}: ok")
    return ExitCode.DATAERR if bad else ExitCode.OK


@audited_command("snapshot.restore", lambda a: {"id": a.id})
def _cmd_restore(args: argparse.Namespace) -> int:
    try:
        res = restore(args.id)
    except SnapshotError as exc:
        return _fail("restore", exc)
    print(f"restored snapshot {res.snapshot.id} (taken {res.snapshot.age_seconds:.0f}s ago) "
          f"over {layout.store_path()}; {res.pre_restore_note}")
    return ExitCode.OK


def _policy(args: argparse.Namespace) -> Policy:
    base = Policy.from_env()
    return Policy(
        keep_last=base.keep_last if args.keep_last is None else args.keep_last,
        keep_hourly=base.keep_hourly if args.keep_hourly is None else args.keep_hourly,
        keep_daily=base.keep_daily if args.keep_daily is None else args.keep_daily,
    )


def _do_prune(args: argparse.Namespace, dry_run: bool) -> int:
    try:
        kept, removed = prune(policy=_policy(args), dry_run=dry_run)
    except SnapshotError as exc:
        return _fail("prune", exc)
    verb = "would remove" if dry_run else "removed"
    for snap in removed:
        print(f"{verb} {snap.id}")
    print(f"kept {len(kept)}, {verb} {len(removed)}")
    return ExitCode.OK


def _cmd_prune(args: argparse.Namespace) -> int:
    return _do_prune(args, dry_run=args.dry_run)


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _add_policy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-last", type=_non_negative,
                   help="env ARK_SNAPSHOT_KEEP_LAST (default 10)")
    p.add_argument("--keep-hourly", type=_non_negative,
                   help="env ARK_SNAPSHOT_KEEP_HOURLY (default 24)")
    p.add_argument("--keep-daily", type=_non_negative,
                   help="env ARK_SNAPSHOT_KEEP_DAILY (default 7)")


@audited_command("snapshot.rotate-key")
def _cmd_rotate_key(args: argparse.Namespace) -> int:
    """Issue 22 §3: a new key; what verified before verifies after (keyrotate.py)."""
    from ark_runtime.host.snapshot.keyrotate import KeyRotationError, rotate_key

    try:
        done = rotate_key(layout.snapshot_dir(), layout.resolve().snapshot_key)
    except KeyRotationError as exc:
        print(f"ark snapshot rotate-key: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    except PermissionError as exc:
        print(f"ark snapshot rotate-key: {exc.filename}: only root may rotate the key",
              file=sys.stderr)
        return ExitCode.NOPERM
    print(f"snapshot key rotated (key id {done.key_id}): {len(done.resigned)} snapshot(s) "
          f"re-signed, {len(done.already_new)} already under the new key, "
          f"{len(done.refused)} left refused (they did not verify before)")
    return ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    snap = sub.add_parser("snapshot", help="snapshots of the memory store (MEM_03)")
    ssub = snap.add_subparsers(dest="snapshot_command", required=True, metavar="ACTION")
    create = ssub.add_parser("create", help="snapshot memory.db with the SQLite backup API")
    create.add_argument("--reason", choices=[r for r in REASONS if r != "pre-restore"],
                        default="manual")
    create.add_argument("--on-shutdown", action="store_true",
                        help="ExecStopPost hook: only when $SERVICE_RESULT=success and no panic")
    create.add_argument("--prune", action="store_true", help="apply retention afterwards")
    _add_policy_flags(create)
    create.set_defaults(func=_cmd_create)
    lst = ssub.add_parser("list", help="snapshots, newest first")
    lst.add_argument("--verify", action="store_true", help="verify each (reads every file)")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=_cmd_list)
    ver = ssub.add_parser("verify", help="check files against manifests; exit 65 if any differ")
    ver.add_argument("id", nargs="?", help="one snapshot (default: all)")
    ver.set_defaults(func=_cmd_verify)
    res = ssub.add_parser("restore", help="restore a verified snapshot over memory.db")
    res.add_argument("id", nargs="?", default="latest", help="snapshot id or 'latest'")
    res.set_defaults(func=_cmd_restore)
    prn = ssub.add_parser("prune", help="apply the retention policy (keeps newest verified)")
    _add_policy_flags(prn)
    prn.add_argument("--dry-run", action="store_true")
    prn.set_defaults(func=_cmd_prune)
    rot = ssub.add_parser("rotate-key", help="new snapshot key; re-sign every snapshot that "
                                             "verifies (root; issue 22)")
    rot.set_defaults(func=_cmd_rotate_key)
