"""MEM_03 restore: replace the store with a verified snapshot, atomically, never destroying the
current one; and the shutdown hook (snapshot + boot state after a clean stop)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ark_runtime import settings
from ark_runtime.host import layout
from ark_runtime.host.atomic import fsync_file, replace
from ark_runtime.host.ownership import chown_like, chown_tree_like, owned_by_dir_owner
from ark_runtime.host.snapshot.snapshots import (
    DB_NAME,
    Snapshot,
    SnapshotError,
    create_snapshot,
    find,
    newest_verified,
    open_readonly,
    sha256_file,
    verify_snapshot,
)


@contextlib.contextmanager
def store_writer_stopped(env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Hold HRM's component lock (INFRA_02) for the duration, so the store is not replaced under
    a running HRM and HRM cannot start mid-restore. The lock file is only opened when it
    exists: creating it here (as root, during heal) would leave a file the ark user cannot open
    for writing. No lock file means HRM has never run with this run dir, so nothing holds it."""
    lock = layout.run_dir(env) / "hrm.lock"
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
        con = open_readonly(db)
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


def _choose(snapshot_id: str, root: Path) -> Snapshot:
    if snapshot_id == "latest":
        snap = newest_verified(root)
        if snap is None:
            raise SnapshotError(f"no snapshot in {root} verifies: nothing safe to restore")
        return snap
    snap = find(snapshot_id, root)
    problems = verify_snapshot(snap)
    if problems:
        raise SnapshotError(f"snapshot {snap.id} does not verify: " + "; ".join(problems))
    return snap


def _save_current(store: Path, root: Path, config_dir: Path | None,
                  ) -> tuple[Snapshot | None, str]:
    if not store.exists():
        return None, "no current database"
    if not db_readable(store):
        return None, "current database unreadable: not saved"
    try:
        pre = create_snapshot("pre-restore", store=store, root=root, config_dir=config_dir)
    except SnapshotError as exc:
        return None, f"current database could not be saved: {exc}"
    return pre, f"current database saved as snapshot {pre.id}"


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
    store = store or layout.store_path()
    root = root or layout.snapshot_dir()
    snap = _choose(snapshot_id, root)
    with store_writer_stopped():
        pre, note = None, "no current database"
        if take_pre_restore:
            pre, note = _save_current(store, root, config_dir)
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.parent / f".{store.name}.restore-{secrets.token_hex(4)}"
        try:
            shutil.copyfile(snap.path / DB_NAME, tmp)
            fsync_file(tmp)
            if sha256_file(tmp) != snap.manifest["files"][DB_NAME]["sha256"]:
                raise SnapshotError(f"{tmp}: copy of snapshot {snap.id} does not match its hash")
            # Heal runs as root: the restored file must belong to ark, or HRM cannot open it.
            owned_by_dir_owner(tmp, store)
            note += _swap_in(tmp, store, keep_damaged=pre is None)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    return RestoreResult(snap, pre, note)


def _swap_in(tmp: Path, store: Path, *, keep_damaged: bool) -> str:
    """Rename `tmp` over `store`; returns a note for the result."""
    damaged, note = None, ""
    if keep_damaged and store.exists():
        # No SQLite copy of the current file could be made: keep its raw bytes (and its WAL)
        # for `sqlite3 .recover`, rather than destroy the only copy.
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        damaged = store.parent / "damaged" / stamp
        damaged.mkdir(parents=True, mode=0o750)
        os.link(store, damaged / store.name)  # a link: the store never goes missing
        note = f"; damaged file kept in {damaged}"
    # Stale -wal/-shm go *before* the rename: an old WAL beside the new file would be replayed
    # into it by SQLite on the next open.
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            if damaged is not None:
                os.replace(f"{store}{suffix}", damaged / f"{store.name}{suffix}")
            else:
                os.unlink(f"{store}{suffix}")
    replace(tmp, store)
    return note


def on_shutdown(env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """ExecStopPost= of HRM's unit: snapshot + boot state only after a clean stop. A crash,
    a kill or a panic must not write "last clean shutdown" (the next boot would then skip the
    checks it needs) nor replace good snapshots with one taken from a suspect state."""
    from ark_runtime.host.bootstate import FILENAME, now_iso, write_boot_state

    result = (settings.systemd_var("SERVICE_RESULT") if env is None
              else env.get("SERVICE_RESULT")) or ""
    if result != "success":
        return 0, f"service result is {result or 'unset'!r}, not 'success': no shutdown snapshot"
    lay = layout.resolve(env)
    if lay.panic_flag.exists():
        return 0, "panic flag present: no shutdown snapshot"
    snap = create_snapshot("shutdown", store=lay.store, root=lay.snapshots,
                           config_dir=lay.config)
    write_boot_state(lay.state, snapshot_id=snap.id, last_clean_shutdown_at=now_iso())
    # The unit runs this hook as root (it must read the root-only key): what it wrote goes to
    # the state dir's owner, so ark can prune and rewrite it. No-op when not root.
    chown_like(lay.snapshots, lay.state)
    chown_tree_like(snap.path, lay.state)
    chown_like(lay.state / FILENAME, lay.state)
    for sidecar in ("-wal", "-shm"):  # a read-only open of a WAL database may create these
        chown_like(Path(f"{lay.store}{sidecar}"), lay.store)
    return 0, f"snapshot {snap.id} created; boot state written"
