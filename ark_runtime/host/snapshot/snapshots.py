"""MEM_03: snapshots of HRM's memory store — create, list, verify (restore, prune: siblings).

A snapshot is a directory `<snapshots>/<UTC timestamp>-<short id>/` holding
  memory.db      a copy made with SQLite's online backup API: a consistent point in time even
                 while agents write (a plain file copy of a WAL database can tear);
  manifest.json  sha256 + size per file, runtime and config versions, reason, created_at, the
                 copy's PRAGMA integrity_check, authenticated with HMAC-SHA256 under the
                 per-host key (manifest.py).
It is built in a hidden temp dir next to the others and renamed into place, with fsyncs, so a
crash leaves either no snapshot or a complete one.

"Verified" means: every file matches the manifest, no file is missing or extra, the manifest is
well-formed, names its own directory and its HMAC holds, and the database was intact when
copied. Restore and prune only trust verified snapshots; a bad one is reported, never fatal.

Modules: snapshots (this: model, create, list, verify), retention (prune),
restore (restore, shutdown hook), cli (`ark snapshot ...`), manifest.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ark_runtime.host import layout
from ark_runtime.host.atomic import atomic_write_text, fsync_dir, fsync_file, replace
from ark_runtime.host.ownership import chown_tree_like, make_dir_like_parent
from ark_runtime.host.snapshot import keyrotate
from ark_runtime.host.snapshot import manifest as mf

__all__ = [
    "REASONS",
    "Snapshot",
    "SnapshotError",
    "create_snapshot",
    "list_snapshots",
    "newest_verified",
    "verify_snapshot",
]  # plus the names in _ELSEWHERE (prune, restore, ...), resolved on first use

REASONS = ("interval", "shutdown", "manual", "pre-restore")
MANIFEST = mf.MANIFEST
DB_NAME = mf.DB_NAME


class SnapshotError(RuntimeError):
    """A snapshot cannot be made, found, trusted or restored; the message says which and why."""


class SnapshotKeyError(SnapshotError):
    """The manifest key cannot be read or created (not root, no credential)."""


class PolicyError(SnapshotError):
    """The retention settings are wrong (configuration)."""


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def config_version(config_dir: Path) -> dict[str, str | None]:
    """What configuration the runtime ran with: sha256 of the ruleset and of the env schema.
    None for a file that does not exist (a host not yet configured is not an error here).
    $ARK_HRM_RULESET wins over <config_dir>/HRM_RULESET.yaml, as for HRM itself."""
    from ark_runtime.host.envcheck import ENV_SCHEMA

    explicit = layout.path_settings().get("ARK_HRM_RULESET")
    ruleset = Path(explicit) if explicit else config_dir / "HRM_RULESET.yaml"
    out: dict[str, str | None] = {}
    for key, path in (("hrm_ruleset", ruleset), ("env_schema", ENV_SCHEMA)):
        out[key] = sha256_file(path) if path.is_file() else None
    return out


@dataclass
class Snapshot:
    id: str
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # from the last read or verify

    @property
    def created_at(self) -> datetime:
        """From the manifest when it is valid, else from the id (never raises: a bad
        manifest must not break sorting the others)."""
        parsed, _ = mf.parse_created_at(self.manifest.get("created_at"))
        return parsed if parsed is not None else _id_time(self.id)

    @property
    def age_seconds(self) -> float:
        return (datetime.now(UTC) - self.created_at).total_seconds()


def _id_time(snapshot_id: str) -> datetime:
    try:
        return datetime.strptime(snapshot_id.split("-")[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


def _key(*, create: bool = False) -> bytes:
    try:
        return mf.load_key(create=create)
    except mf.ManifestKeyError as exc:
        raise SnapshotKeyError(str(exc)) from None


def _key_or_none() -> bytes | None:
    try:
        return mf.load_key()
    except mf.ManifestKeyError:
        return None  # reported per snapshot as "checksum cannot be checked"


# --- create ----------------------------------------------------------------------------------


def open_readonly(db: Path) -> sqlite3.Connection:
    # mode=ro: never create an empty database where the real one is missing.
    if not db.is_file():
        raise SnapshotError(f"{db}: no database to snapshot")
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def _copy_database(store: Path, dest: Path) -> str:
    """Copy `store` into `dest` with the backup API; returns the copy's integrity_check."""
    src = open_readonly(store)
    try:
        dst = sqlite3.connect(dest)
        try:
            # pages=-1 (default): one step under one read transaction, so the copy is a single
            # point in time. Stepping in chunks would restart on every write made by another
            # connection and could never finish under load.
            src.backup(dst)
            # The copy is self-contained: no -wal beside it. The store turns WAL back on when
            # it opens a restored file (MEMORY_SPEC pragmas).
            dst.execute("PRAGMA journal_mode=DELETE")
            return "; ".join(r[0] for r in dst.execute("PRAGMA integrity_check"))
        finally:
            dst.close()
    except sqlite3.DatabaseError as exc:
        raise SnapshotError(f"{store}: cannot copy the database: {exc}") from None
    finally:
        src.close()


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

    key = _key(create=True)  # before any work: no key, no snapshot
    store = store or layout.store_path()
    root = root or layout.snapshot_dir()
    config_dir = config_dir or layout.config_dir()
    make_dir_like_parent(root)
    now = datetime.now(UTC)
    # Microseconds in the id keep two snapshots in the same second in order by name.
    snap_id = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(3)}"
    tmp = root / f".tmp-{snap_id}"
    tmp.mkdir(mode=0o750)
    try:
        integrity = _copy_database(store, tmp / DB_NAME)
        fsync_file(tmp / DB_NAME)
        payload = {
            "id": snap_id,
            "created_at": now.isoformat(),
            "reason": reason,
            "source": str(store),
            "runtime_version": __version__,
            "config_version": config_version(config_dir),
            "integrity_check": integrity,
            "files": {DB_NAME: {"sha256": sha256_file(tmp / DB_NAME),
                                "size": (tmp / DB_NAME).stat().st_size}},
        }
        atomic_write_text(tmp / MANIFEST, mf.render(payload, key), mode=0o640)
        fsync_dir(tmp)
        chown_tree_like(tmp, root)  # taken by root by hand: ark's retention prunes it later
        # A rotation (keyrotate.py) must not run between signing and the rename, nor may a
        # key it replaced sign anything.
        with keyrotate.key_lock(root, exclusive=False):
            try:
                keyrotate.check_current(root, key, layout.resolve().snapshot_key)
            except keyrotate.KeyRotationError as exc:
                raise SnapshotKeyError(str(exc)) from None
            replace(tmp, root / snap_id)  # the snapshot appears complete, or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Snapshot(snap_id, root / snap_id, payload)


def resign(snapshot_dir: Path) -> None:
    """Sign a snapshot's manifest with this host's key, unchanged otherwise. Only for a
    snapshot whose content was verified another way (a DR bundle's member hashes)."""
    read = mf.read_manifest(snapshot_dir, None, check_signature=False)
    if read.problems:
        raise SnapshotError(f"snapshot {snapshot_dir.name}: " + "; ".join(read.problems))
    atomic_write_text(snapshot_dir / MANIFEST, mf.render(read.payload, _key(create=True)),
                      mode=0o640)


def adopt_legacy(root: Path) -> list[str]:
    """Sign the snapshots made before manifests were keyed, whose unkeyed checksum still holds
    and whose files verify. Heal calls it once, right after it creates the host key (the
    upgrade), so a corrupt store can still be restored from them; never afterwards, when an
    unkeyed manifest can only be a forgery. Returns the ids adopted."""
    adopted = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.name.startswith(".") or not entry.is_dir() or not mf.legacy_checksum_ok(entry):
            continue
        if not verify_snapshot(Snapshot(entry.name, entry), check_signature=False):
            resign(entry)
            adopted.append(entry.name)
    return adopted


# --- list / verify ---------------------------------------------------------------------------


def list_snapshots(root: Path | None = None) -> list[Snapshot]:
    """Snapshots, newest first (by created_at, then id). Temp dirs of unfinished ones are
    hidden (leading dot) and never listed. A snapshot with a bad manifest is listed with its
    problems (and sorted by the time in its id)."""
    root = root or layout.snapshot_dir()
    if not root.is_dir():
        return []
    key = _key_or_none()
    snaps = []
    for entry in root.iterdir():
        if entry.name.startswith(".") or not entry.is_dir() or entry.is_symlink():
            continue
        read = mf.read_manifest(entry, key)
        snaps.append(Snapshot(entry.name, entry, read.payload, read.problems))
    snaps.sort(key=lambda s: (s.created_at, s.id), reverse=True)
    return snaps


def verify_snapshot(snap: Snapshot, *, check_signature: bool = True) -> list[str]:
    """Every reason not to trust `snap` (empty when verified). Each names the file or field."""
    read = mf.read_manifest(snap.path, _key_or_none() if check_signature else None,
                            check_signature=check_signature)
    manifest, problems = read.payload, list(read.problems)
    snap.manifest = manifest
    files: dict[str, dict[str, Any]] = manifest.get("files") or {}
    for name, meta in sorted(files.items()):
        fpath = snap.path / name
        if not fpath.is_file():
            problems.append(f"{name}: missing")
        elif fpath.stat().st_size != meta["size"]:
            problems.append(f"{name}: size {fpath.stat().st_size} != manifest {meta['size']}")
        elif sha256_file(fpath) != meta["sha256"]:
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
    raise SnapshotError(f"no snapshot {snapshot_id!r} in {root or layout.snapshot_dir()}")

