"""`ark dr bundle|restore` (REC_03). Runs over SSH from `invoke dr.*`: every expected failure
(a refused archive, a snapshot that cannot be made or restored, a missing key, a full disk) is
one sentence on stderr and a code from ark_runtime/exitcodes.py, never a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from ark_runtime import settings
from ark_runtime.exitcodes import ExitCode
from ark_runtime.host.audit.log import audited_command
from ark_runtime.host.dr.bundle import create_bundle
from ark_runtime.host.dr.format import (
    DEFAULT_LEVEL,
    DEFAULT_SNAPSHOTS,
    BundleError,
    BundleUsageError,
    Sources,
)
from ark_runtime.host.dr.redis_dump import RedisDumpError
from ark_runtime.host.dr.restore import restore_bundle
from ark_runtime.host.snapshot.snapshots import SnapshotError


def _exit_for(exc: Exception) -> ExitCode:
    from ark_runtime.host.snapshot.cli import exit_code_for

    if isinstance(exc, SnapshotError):
        return exit_code_for(exc)
    if isinstance(exc, PermissionError):
        return ExitCode.NOPERM
    return ExitCode.FAILURE


def _snapshot_count(args: argparse.Namespace) -> int:
    if args.snapshots is not None:
        return args.snapshots
    try:
        return settings.get("ARK_DR_SNAPSHOTS")
    except settings.SettingsError as exc:
        raise BundleUsageError(str(exc)) from None


# SEC_03: both are admin actions on the host, recorded in its audit chain (who and the control
# node's correlation id come from ARK_ACTOR / ARK_CORRELATION_ID, set by ark_ops.fleet.dr).
@audited_command("dr.bundle", lambda a: {"out": a.out, "log_dir": a.log_dir,
                                         "snapshots": a.snapshots, "no_snapshot": a.no_snapshot})
def _cmd_bundle(args: argparse.Namespace) -> int:
    src = Sources.from_env()
    if args.log_dir:
        src = dataclasses.replace(src, log=Path(args.log_dir))
    try:
        res = create_bundle(Path(args.out) if args.out else None, src=src,
                            n_snapshots=_snapshot_count(args), level=args.level,
                            take_snapshot=not args.no_snapshot)
    except BundleError as exc:
        print(f"ark dr bundle: {exc}", file=sys.stderr)
        return ExitCode.USAGE if isinstance(exc, BundleUsageError) else ExitCode.FAILURE
    except (SnapshotError, OSError) as exc:
        print(f"ark dr bundle: {exc}", file=sys.stderr)
        return _exit_for(exc)
    if args.json:
        print(json.dumps({"path": str(res.path), "size": res.size, "sha256": res.sha256,
                          "seconds": round(res.seconds, 3), "members": res.members,
                          "snapshots": res.manifest["snapshots"]}))
    else:
        print(f"{res.path}  {res.size} bytes  {res.members} files  "
              f"{res.seconds:.2f} s  sha256 {res.sha256}")
    return ExitCode.OK


@audited_command("dr.restore", lambda a: {"bundle": a.bundle, "dry_run": a.dry_run})
def _cmd_restore(args: argparse.Namespace) -> int:
    try:
        plan, note = restore_bundle(Path(args.bundle), dry_run=args.dry_run)
    except RedisDumpError as exc:  # the archive was fine; restoring Redis from it was not
        print(f"ark dr restore: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    except BundleError as exc:
        print(f"ark dr restore: {exc}", file=sys.stderr)
        return ExitCode.DATAERR
    except (SnapshotError, OSError) as exc:
        print(f"ark dr restore: {exc}", file=sys.stderr)
        return _exit_for(exc)
    m = plan.manifest
    host = m.get("host")
    print(f"bundle from {host.get('hostname') if isinstance(host, dict) else None} at "
          f"{m.get('created_at')}: verified {len(m['members'])} files; snapshot {plan.snapshot}, "
          f"{len(plan.logs)} log files, Redis dump {plan.redis or 'none'}; {note}")
    return ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dr = sub.add_parser("dr", help="disaster-recovery bundle (REC_03)")
    dsub = dr.add_subparsers(dest="dr_command", required=True, metavar="ACTION")
    b = dsub.add_parser("bundle", help="logs + snapshots + redacted config + units, one tar.gz")
    b.add_argument("--out", help="file or directory (default $ARK_STATE_DIR/dr/)")
    b.add_argument("--log-dir", help="logs to include (default $ARK_LOG_DIR)")
    b.add_argument("--snapshots", type=int, help="newest verified snapshots to include "
                   f"(env ARK_DR_SNAPSHOTS, default {DEFAULT_SNAPSHOTS})")
    b.add_argument("--level", type=int, default=DEFAULT_LEVEL, help="gzip level 1-9")
    b.add_argument("--no-snapshot", action="store_true", help="do not take a fresh snapshot")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bundle)
    r = dsub.add_parser("restore", help="verify every member, then restore snapshot and logs")
    r.add_argument("bundle")
    r.add_argument("--dry-run", action="store_true", help="verify only")
    r.set_defaults(func=_cmd_restore)
