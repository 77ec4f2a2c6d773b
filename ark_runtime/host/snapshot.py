"""MEM_03: snapshots of HRM's memory store — create, list, verify, restore, prune.

A snapshot is a directory `<snapshots>/<UTC timestamp>-<short id>/` holding
  memory.db      a copy made with SQLite's online backup API: a consistent point in time even
                 while agents write (a plain file copy of a WAL database can tear);
  manifest.json  sha256 + size per file, runtime and config versions, reason, created_at, the
                 copy's PRAGMA integrity_check, and a sha256 of the manifest's own payload.
It is built in a hidden temp dir next to the others and renamed into place, with fsyncs, so a
crash leaves either no snapshot or a complete one.

"Verified" means: every file matches the manifest, no file is missing or extra, the manifest's
own checksum holds, and the database was intact when copied. Restore and prune only trust
verified snapshots.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ark_runtime.host import layout as paths
from ark_runtime.host.atomic import atomic_write_text, fsync_dir, fsync_file, replace
from ark_runtime.host.audit import audited_command

__all__ = [
    "REASONS",
    "Snapshot",
    "SnapshotError",
    "create_snapshot",
    "list_snapshots",
    "newest_verified",
    "prune",
    "restore",
    "verify_snapshot",
]

REASONS = ("interval", "shutdown", "manual", "pre-restore")
MANIFEST = "manifest.json"
DB_NAME = "memory.db"
EXIT_FAILED = 1
EXIT_CORRUPT = 2
_CHUNK = 1 << 20


class SnapshotError(RuntimeError):
    """A snapshot cannot be made, found, trusted or restored; the message says which and why."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _payload_digest(payload: Mapping[str, Any]) -> str:
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def config_version(config_dir: Path) -> dict[str, str | None]:
    """What configuration the runtime ran with: sha256 of the ruleset and of the env schema.
    None for a file that does not exist (a host not yet configured is not an error here).
    $ARK_HRM_RULESET wins over <config_dir>/HRM_RULESET.yaml, as for HRM itself."""
    from ark_runtime.host.envcheck import ENV_SCHEMA

    ruleset = Path(os.environ.get("ARK_HRM_RULESET") or config_dir / "HRM_RULESET.yaml")
    out: dict[str, str | None] = {}
    for key, path in (("hrm_ruleset", ruleset), ("env_schema", ENV_SCHEMA)):
        out[key] = sha256_file(path) if path.is_file() else None
    return out


@dataclass
class Snapshot:
    id: str
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # from the last verify, if run

    @property
    def created_at(self) -> datetime:
        raw = self.manifest.get("created_at")
        try:
            return datetime.fromisoformat(raw) if isinstance(raw, str) else _id_time(self.id)
        except ValueError:
            return _id_time(self.id)

    @property
    def age_seconds(self) -> float:
        return (datetime.now(UTC) - self.created_at).total_seconds()


def _id_time(snapshot_id: str) -> datetime:
    try:
        return datetime.strptime(snapshot_id.split("-")[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


# --- create ----------------------------------------------------------------------------------


def _open_readonly(db: Path) -> sqlite3.Connection:
    # mode=ro: never create an empty database where the real one is missing.
    if not db.is_file():
        raise SnapshotError(f"{db}: no database to snapshot")
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def create_snapshot(
    reason: str = "manual",
    *,
    store: Path | None = None,
    root: Path | None = None,
    config_dir: Path | None = None,
) -> Snapshot:
    if reason not in REASONS:
        raise SnapshotError(f"unknown reason {reason!r}: use one of {', '.join(REASONS)}")
    from ark_runtime import __version__

    store = store or paths.store_path()
    root = root or paths.snapshot_dir()
    config_dir = config_dir or paths.config_dir()
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    # Microseconds in the id keep two snapshots in the same second in order by name.
    snap_id = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(3)}"
    tmp = root / f".tmp-{snap_id}"
    tmp.mkdir(mode=0o750)
    try:
        src = _open_readonly(store)
        try:
            dst = sqlite3.connect(tmp / DB_NAME)
            try:
                # pages=-1 (default): one step under one read transaction, so the copy is a
                # single point in time. Stepping in chunks would restart on every write made
                # by another connection and could never finish under load.
                src.backup(dst)
                # The copy is self-contained: no -wal beside it. The store turns WAL back on
                # when it opens a restored file (MEMORY_SPEC pragmas).
                dst.execute("PRAGMA journal_mode=DELETE")
                integrity = "; ".join(r[0] for r in dst.execute("PRAGMA integrity_check"))
            finally:
                dst.close()
        except sqlite3.DatabaseError as exc:
            raise SnapshotError(f"{store}: cannot copy the database: {exc}") from None
        finally:
            src.close()
        fsync_file(tmp / DB_NAME)
        files = {
            DB_NAME: {"sha256": sha256_file(tmp / DB_NAME), "size": (tmp / DB_NAME).stat().st_size}
        }
        payload = {
            "id": snap_id,
            "created_at": now.isoformat(),
            "reason": reason,
            "source": str(store),
            "runtime_version": __version__,
            "config_version": config_version(config_dir),
            "integrity_check": integrity,
            "files": files,
        }
        manifest = {"payload": payload, "sha256": _payload_digest(payload)}
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                          mode=0o640)
        fsync_dir(tmp)
        replace(tmp, root / snap_id)  # the snapshot appears complete, or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Snapshot(snap_id, root / snap_id, payload)


# --- list / verify ---------------------------------------------------------------------------


def _read_manifest(path: Path) -> tuple[dict[str, Any], list[str]]:
    mpath = path / MANIFEST
    try:
        doc = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, [f"{MANIFEST}: missing"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, [f"{MANIFEST}: unreadable ({exc})"]
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
        return {}, [f"{MANIFEST}: no payload object"]
    problems = []
    if doc.get("sha256") != _payload_digest(doc["payload"]):
        problems.append(f"{MANIFEST}: checksum mismatch (manifest was altered)")
    return doc["payload"], problems


def list_snapshots(root: Path | None = None) -> list[Snapshot]:
    """Snapshots, newest first (by created_at, then id). Temp dirs of unfinished ones are
    hidden (leading dot) and never listed."""
    root = root or paths.snapshot_dir()
    if not root.is_dir():
        return []
    snaps = []
    for entry in root.iterdir():
        if entry.name.startswith(".") or not entry.is_dir() or entry.is_symlink():
            continue
        manifest, problems = _read_manifest(entry)
        snaps.append(Snapshot(entry.name, entry, manifest, problems))
    snaps.sort(key=lambda s: (s.created_at, s.id), reverse=True)
    return snaps


def verify_snapshot(snap: Snapshot) -> list[str]:
    """Every reason not to trust `snap` (empty when verified). Each names the file."""
    manifest, problems = _read_manifest(snap.path)
    snap.manifest = manifest
    files = manifest.get("files")
    if manifest and not isinstance(files, dict):
        problems.append(f"{MANIFEST}: no file list")
        files = {}
    files = files or {}
    if manifest and DB_NAME not in files:
        problems.append(f"{MANIFEST}: does not list {DB_NAME}")
    for name, meta in sorted(files.items()):
        fpath = snap.path / name
        if "/" in name or name in (".", ".."):
            problems.append(f"{MANIFEST}: bad file name {name!r}")
        elif not fpath.is_file():
            problems.append(f"{name}: missing")
        elif fpath.stat().st_size != meta.get("size"):
            problems.append(f"{name}: size {fpath.stat().st_size} != manifest {meta.get('size')}")
        elif sha256_file(fpath) != meta.get("sha256"):
            problems.append(f"{name}: sha256 mismatch (content changed)")
    for extra in sorted(p.name for p in snap.path.iterdir()):
        if extra != MANIFEST and extra not in files:
            problems.append(f"{extra}: not in the manifest")
    if manifest and manifest.get("integrity_check") != "ok":
        problems.append(
            f"{DB_NAME}: integrity_check was not ok when copied: {manifest.get('integrity_check')}"
        )
    snap.problems = problems
    return problems


def newest_verified(root: Path | None = None) -> Snapshot | None:
    for snap in list_snapshots(root):
        if not verify_snapshot(snap):
            return snap
    return None


def find(snapshot_id: str, root: Path | None = None) -> Snapshot:
    for snap in list_snapshots(root):
        if snap.id == snapshot_id:
            return snap
    raise SnapshotError(f"no snapshot {snapshot_id!r} in {root or paths.snapshot_dir()}")


# --- prune -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    keep_last: int = 10
    keep_hourly: int = 24
    keep_daily: int = 7

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Policy:
        env = os.environ if env is None else env
        values = {}
        for name, key in (("keep_last", "ARK_SNAPSHOT_KEEP_LAST"),
                          ("keep_hourly", "ARK_SNAPSHOT_KEEP_HOURLY"),
                          ("keep_daily", "ARK_SNAPSHOT_KEEP_DAILY")):
            if env.get(key):
                try:
                    values[name] = int(env[key])
                except ValueError:
                    raise SnapshotError(f"{key} must be an integer") from None
                if values[name] < 0:
                    raise SnapshotError(f"{key} must be >= 0")
        return cls(**values)


def plan_prune(snaps: list[Snapshot], policy: Policy) -> dict[str, list[str]]:
    """{snapshot id: reasons to keep it} for the kept ones (restic semantics: keep-hourly N
    keeps the newest snapshot of each of the N most recent hours that have one). `snaps` is
    newest first. Never keeps nothing: the newest *verified* snapshot is always kept, which the
    caller marks before calling (reason "newest verified")."""
    keep: dict[str, list[str]] = {}
    for snap in snaps[: policy.keep_last]:
        keep.setdefault(snap.id, []).append("last")
    for label, fmt, limit in (("hourly", "%Y%m%d%H", policy.keep_hourly),
                              ("daily", "%Y%m%d", policy.keep_daily)):
        seen: set[str] = set()
        for snap in snaps:
            bucket = snap.created_at.astimezone(UTC).strftime(fmt)
            if bucket in seen:
                continue
            if len(seen) >= limit:
                break
            seen.add(bucket)
            keep.setdefault(snap.id, []).append(label)
    return keep


def prune(root: Path | None = None, policy: Policy | None = None, *, dry_run: bool = False,
          ) -> tuple[list[Snapshot], list[Snapshot]]:
    """Delete what the policy does not keep; returns (kept, removed)."""
    root = root or paths.snapshot_dir()
    policy = policy or Policy.from_env()
    snaps = list_snapshots(root)
    keep = plan_prune(snaps, policy)
    newest_ok = newest_verified(root)
    if newest_ok is not None:
        # A corrupt newest snapshot must not push the last good one out of the window.
        keep.setdefault(newest_ok.id, []).append("newest verified")
    kept = [s for s in snaps if s.id in keep]
    removed = [s for s in snaps if s.id not in keep]
    if not dry_run:
        for snap in removed:
            # Rename first so a half-deleted snapshot is never listed as a (corrupt) snapshot.
            trash = root / f".del-{snap.id}"
            os.replace(snap.path, trash)
            shutil.rmtree(trash)
        _clean_stale_temp(root)
        fsync_dir(root)
    return kept, removed


def _clean_stale_temp(root: Path, older_than: float = 3600.0) -> None:
    # Leftovers of a create or prune that crashed; an hour old cannot be one still running.
    for entry in root.glob(".*"):
        with contextlib.suppress(OSError):
            if entry.is_dir() and time.time() - entry.stat().st_mtime > older_than:
                shutil.rmtree(entry)


# --- restore ---------------------------------------------------------------------------------


@contextlib.contextmanager
def store_writer_stopped(env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Hold HRM's component lock (INFRA_02) for the duration, so the store is not replaced under
    a running HRM and HRM cannot start mid-restore. The lock file is only opened when it
    exists: creating it here (as root, during heal) would leave a file the ark user cannot open
    for writing. No lock file means HRM has never run with this run dir, so nothing holds it."""
    from ark_runtime.lock import run_dir

    lock = run_dir(dict(os.environ if env is None else env)) / "hrm.lock"
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SnapshotError(
                f"HRM is running (it holds {lock}): stop it first "
                "(systemctl stop ark-agent@hrm) — the store cannot be replaced under it"
            ) from None
        yield
    finally:
        os.close(fd)


def db_readable(db: Path) -> bool:
    """Can SQLite open this file and read its schema? (Corrupt pages elsewhere may still
    exist; integrity_check is the full test.)"""
    if not db.is_file():
        return False
    try:
        con = _open_readonly(db)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except (sqlite3.DatabaseError, SnapshotError):
        return False
    return True


@dataclass
class RestoreResult:
    snapshot: Snapshot
    pre_restore: Snapshot | None
    pre_restore_note: str


def restore(
    snapshot_id: str = "latest",
    *,
    store: Path | None = None,
    root: Path | None = None,
    config_dir: Path | None = None,
    take_pre_restore: bool = True,
) -> RestoreResult:
    """Replace the store with a verified snapshot, atomically. The current db is snapshotted
    first (reason pre-restore) when SQLite can read it, so a restore never destroys data."""
    store = store or paths.store_path()
    root = root or paths.snapshot_dir()
    if snapshot_id == "latest":
        snap = newest_verified(root)
        if snap is None:
            raise SnapshotError(f"no snapshot in {root} verifies: nothing safe to restore")
    else:
        snap = find(snapshot_id, root)
        problems = verify_snapshot(snap)
        if problems:
            raise SnapshotError(f"snapshot {snap.id} does not verify: " + "; ".join(problems))
    with store_writer_stopped():
        pre, note = None, "no current database"
        if take_pre_restore and store.exists():
            if db_readable(store):
                try:
                    pre = create_snapshot("pre-restore", store=store, root=root,
                                          config_dir=config_dir)
                    note = f"current database saved as snapshot {pre.id}"
                except SnapshotError as exc:
                    note = f"current database could not be saved: {exc}"
            else:
                note = "current database unreadable: not saved"
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.parent / f".{store.name}.restore-{secrets.token_hex(4)}"
        try:
            shutil.copyfile(snap.path / DB_NAME, tmp)
            fsync_file(tmp)
            if sha256_file(tmp) != snap.manifest["files"][DB_NAME]["sha256"]:
                raise SnapshotError(f"{tmp}: copy of snapshot {snap.id} does not match its hash")
            _match_owner(tmp, store)
            damaged = None
            if pre is None and store.exists():
                # No SQLite copy of the current file could be made: keep its raw bytes (and
                # its WAL) for `sqlite3 .recover`, rather than destroy the only copy.
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
                damaged = store.parent / "damaged" / stamp
                damaged.mkdir(parents=True, mode=0o750)
                os.link(store, damaged / store.name)  # a link: the store never goes missing
                note += f"; damaged file kept in {damaged}"
            # Stale -wal/-shm go *before* the rename: an old WAL beside the new file would be
            # replayed into it by SQLite on the next open.
            for suffix in ("-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    if damaged is not None:
                        os.replace(f"{store}{suffix}", damaged / f"{store.name}{suffix}")
                    else:
                        os.unlink(f"{store}{suffix}")
            replace(tmp, store)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    return RestoreResult(snap, pre, note)


def _match_owner(new: Path, old: Path) -> None:
    """Heal runs as root: the restored file must belong to the owner of the state directory
    (ark), or HRM cannot open it. Not the old file's owner: that file is the damaged one."""
    st = old.parent.stat()
    if os.geteuid() == 0:
        os.chown(new, st.st_uid, st.st_gid)
    os.chmod(new, 0o640)


# --- shutdown hook ---------------------------------------------------------------------------


def on_shutdown(env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """ExecStopPost= of HRM's unit: snapshot + boot state only after a clean stop. A crash,
    a kill or a panic must not write "last clean shutdown" (the next boot would then skip the
    checks it needs) nor replace good snapshots with one taken from a suspect state."""
    from ark_runtime.host.bootstate import now_iso, write_boot_state

    env = os.environ if env is None else env
    result = env.get("SERVICE_RESULT", "")
    if result != "success":
        return 0, f"service result is {result or 'unset'!r}, not 'success': no shutdown snapshot"
    if paths.panic_flag(env).exists():
        return 0, "panic flag present: no shutdown snapshot"
    snap = create_snapshot(
        "shutdown", store=paths.store_path(env), root=paths.snapshot_dir(env),
        config_dir=paths.config_dir(env),
    )
    write_boot_state(paths.state_dir(env), snapshot_id=snap.id, last_clean_shutdown_at=now_iso())
    return 0, f"snapshot {snap.id} created; boot state written"


# --- `ark snapshot ...` ----------------------------------------------------------------------


def _row(snap: Snapshot, verified: bool | None) -> dict[str, Any]:
    m = snap.manifest
    return {
        "id": snap.id,
        "created_at": m.get("created_at"),
        "reason": m.get("reason"),
        "size": sum(f.get("size", 0) for f in (m.get("files") or {}).values()),
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
        print(f"ark snapshot create: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{snap.id} {snap.path} integrity={snap.manifest['integrity_check']}")
    if args.prune:
        return _do_prune(args, dry_run=False)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    snaps = list_snapshots()
    if args.verify:
        for snap in snaps:
            verify_snapshot(snap)
    rows = [_row(s, (not s.problems) if args.verify else None) for s in snaps]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = {None: "", True: "verified", False: "CORRUPT"}[r["verified"]]
        print(f"{r['id']}  {r['created_at']}  {r['reason'] or '?':<11} {r['size']:>12}  {state}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    try:
        snaps = [find(args.id)] if args.id else list_snapshots()
    except SnapshotError as exc:
        print(f"ark snapshot verify: {exc}", file=sys.stderr)
        return EXIT_FAILED
    bad = 0
    for snap in snaps:
        problems = verify_snapshot(snap)
        if problems:
            bad += 1
            for p in problems:
                print(f"{snap.id}: {p}", file=sys.stderr)
        else:
            print(f"{snap.id}: ok")
    return EXIT_CORRUPT if bad else 0


@audited_command("snapshot.restore", lambda a: {"id": a.id})
def _cmd_restore(args: argparse.Namespace) -> int:
    try:
        res = restore(args.id)
    except SnapshotError as exc:
        print(f"ark snapshot restore: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"restored snapshot {res.snapshot.id} (taken {res.snapshot.age_seconds:.0f}s ago) "
          f"over {paths.store_path()}; {res.pre_restore_note}")
    return 0


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
        print(f"ark snapshot prune: {exc}", file=sys.stderr)
        return EXIT_FAILED
    verb = "would remove" if dry_run else "removed"
    for snap in removed:
        print(f"{verb} {snap.id}")
    print(f"kept {len(kept)}, {verb} {len(removed)}")
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    return _do_prune(args, dry_run=args.dry_run)


def _add_policy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-last", type=int, help="env ARK_SNAPSHOT_KEEP_LAST (default 10)")
    p.add_argument("--keep-hourly", type=int, help="env ARK_SNAPSHOT_KEEP_HOURLY (default 24)")
    p.add_argument("--keep-daily", type=int, help="env ARK_SNAPSHOT_KEEP_DAILY (default 7)")


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
    ver = ssub.add_parser("verify", help="check files against manifests; exit 2 if any differ")
    ver.add_argument("id", nargs="?", help="one snapshot (default: all)")
    ver.set_defaults(func=_cmd_verify)
    res = ssub.add_parser("restore", help="restore a verified snapshot over memory.db")
    res.add_argument("id", nargs="?", default="latest", help="snapshot id or 'latest'")
    res.set_defaults(func=_cmd_restore)
    prn = ssub.add_parser("prune", help="apply the retention policy (keeps newest verified)")
    _add_policy_flags(prn)
    prn.add_argument("--dry-run", action="store_true")
    prn.set_defaults(func=_cmd_prune)
