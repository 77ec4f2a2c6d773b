"""heal, store and boot state: PRAGMA integrity_check + MEMORY_SPEC schema, read-only;
corrupt or missing -> restore the newest snapshot that verifies (loss bounded by its age).
Boot state: checksum; bad, missing or stale after a restore -> rewritten from current facts."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from ark_runtime.host.ownership import chown_like, chown_tree_like

if TYPE_CHECKING:
    from ark_runtime.host.heal.context import HealContext


def store_version(db: Path) -> int | None:
    """The store's schema version (read-only), None when unreadable."""
    from ark_runtime.store_schema import schema_version

    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return schema_version(con)
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return None


def store_problem(db: Path) -> str | None:
    """Why the store cannot be used as it is, or None. Read-only: heal runs as root and must
    not create a root-owned -wal/-shm that HRM (user ark) then cannot open."""
    from ark_runtime.store import MemoryStore, load_spec

    if not db.exists():
        return "missing"
    sidecars_before = {s for s in ("-wal", "-shm") if Path(f"{db}{s}").exists()}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            con.row_factory = sqlite3.Row
            rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
            if rows != ["ok"]:
                return "integrity_check failed: " + "; ".join(rows[:5])
            # The store's own schema comparison, on this read-only connection.
            shim = SimpleNamespace(_db=con, spec=load_spec())
            schema = MemoryStore.verify_schema(shim)  # type: ignore[arg-type]
            if schema:
                return "schema does not match MEMORY_SPEC: " + "; ".join(schema[:5])
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"not a usable SQLite database: {exc}"
    finally:
        for s in ("-wal", "-shm"):
            if s not in sidecars_before:
                chown_like(Path(f"{db}{s}"), db)
    return None


def check_store(h: HealContext) -> bool:
    """True when the store was replaced from a snapshot."""
    from ark_runtime.host.snapshot import restore as snapshot_restore
    from ark_runtime.host.snapshot import snapshots as snap

    db = h.layout.store
    from ark_runtime.store_schema import SCHEMA_VERSION

    problem = store_problem(db)
    if problem is None:
        version = store_version(db) or SCHEMA_VERSION
        if version > SCHEMA_VERSION:
            # Not corruption, and not ours to restore over: a newer release wrote it.
            h.add("store", db, "failed", f"integrity_check ok, but schema v{version} is from "
                  f"a newer ARK release (this one reads up to v{SCHEMA_VERSION}): deploy that "
                  "release again, or restore a snapshot this release took")
            return False
        if version < SCHEMA_VERSION:
            h.add("store", db, "ok", f"integrity_check ok; older schema v{version}, not "
                  f"corruption: HRM migrates it to v{SCHEMA_VERSION} on start")
            return False
        h.add("store", db, "ok", "integrity_check ok, schema matches MEMORY_SPEC")
        return False
    if problem == "missing" and not any(snap.list_snapshots(h.layout.snapshots)):
        h.add("store", db, "ok", "no store and no snapshots yet: first start, HRM creates it")
        return False
    good = snap.newest_verified(h.layout.snapshots)
    if good is None:
        h.add("store", db, "failed",
              f"{problem}; no snapshot in {h.layout.snapshots} verifies: cannot restore "
              "(recover one with ark dr restore BUNDLE, or move the store away to start "
              "empty, knowingly)")
        return False
    age = round(good.age_seconds)
    detail = (f"{problem}; restored snapshot {good.id}: changes made in the {age} s "
              f"before it was taken and after are lost")
    if not h.fix("store", db, detail, snapshot=good.id, data_loss_bound_seconds=age):
        return False
    finding = h.findings[-1]
    try:
        res = snapshot_restore.restore(good.id, store=db, root=h.layout.snapshots,
                                       config_dir=h.layout.config)
    except snap.SnapshotError as exc:
        finding.status, finding.detail = "failed", f"{problem}; restore failed: {exc}"
        return False
    finding.data["pre_restore"] = res.pre_restore_note
    # Anything root created under the state dir goes to its owner (ark): the snapshot
    # timer, running as ark, must still be able to write and prune there.
    chown_like(h.layout.snapshots, h.layout.state)
    if res.pre_restore is not None:
        chown_tree_like(res.pre_restore.path, h.layout.state)
    if (h.layout.store.parent / "damaged").is_dir():
        chown_tree_like(h.layout.store.parent / "damaged", h.layout.state)
    again = store_problem(db)
    if again is not None:
        finding.status, finding.detail = "failed", f"restored snapshot {good.id} but: {again}"
        return False
    return True


def check_boot_state(h: HealContext, restored: bool) -> None:
    from ark_runtime.host import bootstate
    from ark_runtime.host.snapshot.snapshots import newest_verified

    try:
        payload = bootstate.load_boot_state(h.layout.state)
    except bootstate.BootStateError as exc:
        payload, why = None, str(exc)
    else:
        why = ""
    target = h.layout.state / bootstate.FILENAME
    if payload is not None and not restored:
        h.add("boot_state", target, "ok",
              f"checksum ok; last clean shutdown {payload.get('last_clean_shutdown_at')}")
        return
    if payload is not None:
        why = "store was restored from a snapshot"
    if not h.fix("boot_state", target, f"{why}: rewritten from current facts"):
        return
    newest = newest_verified(h.layout.snapshots)
    bootstate.write_boot_state(
        h.layout.state,
        snapshot_id=newest.id if newest else None,
        # Keep a known clean shutdown time only when the old file was trustworthy.
        last_clean_shutdown_at=(payload or {}).get("last_clean_shutdown_at"),
        extra={"rewritten_by_heal_at": datetime.now(UTC).isoformat(), "rewrite_reason": why},
    )
    chown_like(target, h.layout.state)
