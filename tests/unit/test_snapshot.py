"""MEM_03 snapshots and MEM_02 boot state, on real SQLite files in a temp state dir."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ark_runtime.cli import main
from ark_runtime.host.atomic import atomic_write_bytes, atomic_write_text
from ark_runtime.host.bootstate import BootStateError, load_boot_state, write_boot_state
from ark_runtime.host.snapshot import manifest
from ark_runtime.host.snapshot import snapshots as snapmod
from ark_runtime.host.snapshot.restore import restore
from ark_runtime.host.snapshot.retention import Policy, plan_prune, prune
from ark_runtime.host.snapshot.snapshots import (
    Snapshot,
    SnapshotError,
    create_snapshot,
    list_snapshots,
    newest_verified,
    verify_snapshot,
)
from ark_runtime.store import MemoryStore
from tests.support.store_sql import integrity_ok, object_count

pytestmark = pytest.mark.requirement("MEM_03")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    dirs = {"state": tmp_path / "state", "config": tmp_path / "etc", "run": tmp_path / "run"}
    for d in dirs.values():
        d.mkdir()
    (dirs["config"] / "HRM_RULESET.yaml").write_text("rules: []\n")
    monkeypatch.setenv("ARK_STATE_DIR", str(dirs["state"]))
    monkeypatch.setenv("ARK_CONFIG_DIR", str(dirs["config"]))
    monkeypatch.setenv("ARK_RUN_DIR", str(dirs["run"]))
    for var in ("ARK_STORE_PATH", "ARK_SNAPSHOT_DIR", "SERVICE_RESULT", "ARK_HRM_RULESET"):
        monkeypatch.delenv(var, raising=False)
    return dirs


def fill(db: Path, n: int, start: int = 0) -> None:
    with MemoryStore(db) as store:
        for i in range(start, start + n):
            store.save("tick", {"i": i})
        store.set_state("count", start + n)


def count(db: Path) -> int:
    # Read-only: opening a snapshot with MemoryStore would switch it to WAL, i.e. change it.
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM objects").fetchone()[0]
    finally:
        con.close()


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two", mode=0o600)
    assert target.read_text() == "two"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]  # fails mid-write
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_create_writes_db_and_manifest(env: dict[str, Path]) -> None:
    db = env["state"] / "memory.db"
    fill(db, 5)
    snap = create_snapshot("manual")
    assert snap.path.parent == env["state"] / "snapshots"
    assert sorted(p.name for p in snap.path.iterdir()) == ["manifest.json", "memory.db"]
    doc = json.loads((snap.path / "manifest.json").read_text())
    m = doc["payload"]
    assert m["reason"] == "manual" and m["integrity_check"] == "ok"
    assert m["runtime_version"]
    assert m["config_version"]["hrm_ruleset"] == snapmod.sha256_file(
        env["config"] / "HRM_RULESET.yaml")
    assert m["config_version"]["env_schema"]
    assert m["files"]["memory.db"]["sha256"] == snapmod.sha256_file(snap.path / "memory.db")
    assert count(snap.path / "memory.db") == 5
    assert verify_snapshot(snap) == []
    assert not [p for p in snap.path.parent.iterdir() if p.name.startswith(".")]


def test_create_without_store_is_clear_and_leaves_nothing(env: dict[str, Path]) -> None:
    with pytest.raises(SnapshotError, match="no database"):
        create_snapshot("manual")
    assert not (env["state"] / "memory.db").exists()
    assert list((env["state"] / "snapshots").iterdir()) == []


@pytest.mark.parametrize("damage", ["flip_db", "truncate_db", "delete_db", "edit_manifest",
                                    "forge_manifest_hash", "extra_file", "delete_manifest"])
def test_verify_detects_any_change(env: dict[str, Path], damage: str) -> None:
    fill(env["state"] / "memory.db", 3)
    snap = create_snapshot("manual")
    db, man = snap.path / "memory.db", snap.path / "manifest.json"
    if damage == "flip_db":
        data = bytearray(db.read_bytes())
        data[len(data) // 2] ^= 0x01
        db.write_bytes(bytes(data))
        expect = "memory.db: sha256"
    elif damage == "truncate_db":
        db.write_bytes(db.read_bytes()[:-1])
        expect = "memory.db: size"
    elif damage == "delete_db":
        db.unlink()
        expect = "memory.db: missing"
    elif damage == "edit_manifest":
        doc = json.loads(man.read_text())
        doc["payload"]["reason"] = "interval"
        man.write_text(json.dumps(doc))
        expect = "manifest.json: checksum"
    elif damage == "forge_manifest_hash":
        doc = json.loads(man.read_text())
        doc["payload"]["files"]["memory.db"]["sha256"] = "0" * 64
        man.write_text(json.dumps(doc))
        expect = "manifest.json: checksum"
    elif damage == "extra_file":
        (snap.path / "evil.db").write_text("x")
        expect = "evil.db: not in the manifest"
    else:
        man.unlink()
        expect = "manifest.json: missing"
    problems = verify_snapshot(Snapshot(snap.id, snap.path))
    assert any(p.startswith(expect) for p in problems), problems
    assert main(["snapshot", "verify", snap.id]) == 65  # ExitCode.DATAERR


def test_verify_cli_ok(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    fill(env["state"] / "memory.db", 1)
    snap = create_snapshot("manual")
    assert main(["snapshot", "verify"]) == 0
    assert f"{snap.id}: ok" in capsys.readouterr().out


def _fake(snap_root: Path, when: datetime, *, corrupt: bool = False) -> Snapshot:
    """A real snapshot whose created_at is rewritten (and re-signed) to `when`."""
    snap = create_snapshot("interval", root=snap_root)
    man = snap.path / "manifest.json"
    doc = json.loads(man.read_text())
    doc["payload"]["created_at"] = when.isoformat()
    man.write_text(manifest.render(doc["payload"], manifest.load_key()))
    if corrupt:
        (snap.path / "memory.db").write_bytes(b"garbage")
    return Snapshot(snap.id, snap.path)


def test_retention_restic_semantics(env: dict[str, Path]) -> None:
    fill(env["state"] / "memory.db", 1)
    root = env["state"] / "snapshots"
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    # Every 20 minutes for 3 days.
    for k in range(3 * 72):
        _fake(root, now - timedelta(minutes=20 * k))
    snaps = list_snapshots(root)
    keep = plan_prune(snaps, Policy(keep_last=2, keep_hourly=5, keep_daily=3))
    kept = [s for s in snaps if s.id in keep]
    # last 2 + newest of 5 hours (first overlaps with last) + newest of 3 days (overlap)
    hours = {s.created_at.strftime("%d%H") for s in kept if "hourly" in keep[s.id]}
    days = {s.created_at.strftime("%d") for s in kept if "daily" in keep[s.id]}
    assert len(hours) == 5 and len(days) == 3
    assert [s.id for s in snaps[:2]] == [s.id for s in kept[:2]]
    kept2, removed = prune(root, Policy(keep_last=2, keep_hourly=5, keep_daily=3))
    assert {s.id for s in kept2} == set(keep)
    assert {p.name for p in root.iterdir()} == set(keep)
    assert len(removed) == len(snaps) - len(keep)


def test_prune_keeps_newest_verified_when_newest_is_corrupt(env: dict[str, Path]) -> None:
    fill(env["state"] / "memory.db", 1)
    root = env["state"] / "snapshots"
    now = datetime.now(UTC)
    good = _fake(root, now - timedelta(hours=3))
    bad1 = _fake(root, now - timedelta(minutes=2), corrupt=True)
    bad2 = _fake(root, now - timedelta(minutes=1), corrupt=True)
    assert newest_verified(root).id == good.id
    kept, removed = prune(root, Policy(keep_last=1, keep_hourly=0, keep_daily=0))
    assert {s.id for s in kept} == {bad2.id, good.id}
    assert {s.id for s in removed} == {bad1.id}
    # Even a policy that keeps nothing keeps the newest verified one.
    kept, _ = prune(root, Policy(keep_last=0, keep_hourly=0, keep_daily=0))
    assert [s.id for s in kept] == [good.id]
    assert [p.name for p in root.iterdir()] == [good.id]


def test_prune_env_policy(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARK_SNAPSHOT_KEEP_LAST", "3")
    monkeypatch.setenv("ARK_SNAPSHOT_KEEP_HOURLY", "0")
    monkeypatch.setenv("ARK_SNAPSHOT_KEEP_DAILY", "0")
    fill(env["state"] / "memory.db", 1)
    for _ in range(5):
        create_snapshot("interval")
    assert main(["snapshot", "prune"]) == 0
    assert len(list_snapshots()) == 3
    assert main(["snapshot", "prune", "--keep-last", "1"]) == 0
    assert len(list_snapshots()) == 1
    monkeypatch.setenv("ARK_SNAPSHOT_KEEP_LAST", "many")
    assert main(["snapshot", "prune"]) == 78  # ExitCode.CONFIG
    assert len(list_snapshots()) == 1


def test_restore_latest_verified_with_pre_restore(env: dict[str, Path]) -> None:
    db = env["state"] / "memory.db"
    fill(db, 3)
    good = create_snapshot("interval")
    fill(db, 4, start=3)
    bad = create_snapshot("interval")
    (bad.path / "memory.db").write_bytes(b"x" * 10)  # newest snapshot corrupt
    res = restore("latest")
    assert res.snapshot.id == good.id
    assert res.pre_restore is not None and count(res.pre_restore.path / "memory.db") == 7
    assert count(db) == 3
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    # The pre-restore snapshot makes the restore reversible.
    restore(res.pre_restore.id)
    assert count(db) == 7


def test_restore_over_corrupt_db_removes_stale_wal(env: dict[str, Path]) -> None:
    db = env["state"] / "memory.db"
    fill(db, 2)
    create_snapshot("manual")
    db.write_bytes(b"not a database" * 100)
    Path(f"{db}-wal").write_bytes(b"stale wal")
    Path(f"{db}-shm").write_bytes(b"stale shm")
    res = restore()
    assert res.pre_restore is None and "unreadable" in res.pre_restore_note
    assert not Path(f"{db}-shm").exists()
    [kept] = (env["state"] / "damaged").iterdir()  # nothing destroyed: raw bytes + WAL kept
    assert (kept / "memory.db").read_bytes() == b"not a database" * 100
    assert (kept / "memory.db-wal").read_bytes() == b"stale wal"
    with MemoryStore(db) as store:
        assert integrity_ok(store) and object_count(store) == 2


def test_restore_refuses_unverified_and_keeps_db(env: dict[str, Path]) -> None:
    db = env["state"] / "memory.db"
    fill(db, 2)
    snap = create_snapshot("manual")
    (snap.path / "memory.db").write_bytes(b"junk")
    before = db.read_bytes()
    with pytest.raises(SnapshotError, match="does not verify"):
        restore(snap.id)
    with pytest.raises(SnapshotError, match="no snapshot .* verifies"):
        restore("latest")
    assert db.read_bytes() == before
    assert main(["snapshot", "restore"]) == 1


def test_restore_refused_while_hrm_holds_its_lock(env: dict[str, Path]) -> None:
    from ark_runtime.lock import ComponentLock

    db = env["state"] / "memory.db"
    fill(db, 2)
    create_snapshot("manual")
    with ComponentLock("hrm", env["run"]), pytest.raises(SnapshotError, match="HRM is running"):
        restore()
    assert count(db) == 2


def test_shutdown_hook_only_on_success(env: dict[str, Path],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fill(env["state"] / "memory.db", 1)
    for result in ("", "exit-code", "signal", "watchdog"):
        monkeypatch.setenv("SERVICE_RESULT", result)
        assert main(["snapshot", "create", "--on-shutdown"]) == 0
    assert list_snapshots() == []
    assert not (env["state"] / "boot_state.json").exists()
    monkeypatch.setenv("SERVICE_RESULT", "success")
    (env["state"] / "PANIC").write_text("")
    assert main(["snapshot", "create", "--on-shutdown"]) == 0
    assert list_snapshots() == []
    (env["state"] / "PANIC").unlink()
    assert main(["snapshot", "create", "--on-shutdown"]) == 0
    [snap] = list_snapshots()
    assert snap.manifest["reason"] == "shutdown"
    assert load_boot_state(env["state"])["snapshot_id"] == snap.id


@pytest.mark.requirement("MEM_02")
def test_boot_state_checksum(tmp_path: Path) -> None:
    payload = write_boot_state(tmp_path, snapshot_id="abc", last_clean_shutdown_at=None)
    assert load_boot_state(tmp_path) == payload
    path = tmp_path / "boot_state.json"
    doc = json.loads(path.read_text())
    doc["payload"]["snapshot_id"] = "other"
    path.write_text(json.dumps(doc))
    with pytest.raises(BootStateError, match="checksum"):
        load_boot_state(tmp_path)
    path.write_text(path.read_text()[:20])
    with pytest.raises(BootStateError, match="unreadable"):
        load_boot_state(tmp_path)
    path.unlink()
    with pytest.raises(BootStateError, match="missing"):
        load_boot_state(tmp_path)


def test_list_json(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    fill(env["state"] / "memory.db", 1)
    a = create_snapshot("manual")
    b = create_snapshot("interval")
    capsys.readouterr()
    assert main(["snapshot", "list", "--json", "--verify"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [b.id, a.id]
    assert all(r["verified"] for r in rows)
    assert os.path.isdir(a.path)


def test_snapshot_of_sqlite_without_wal_source(env: dict[str, Path]) -> None:
    # A database some other tool wrote (rollback journal) snapshots too.
    con = sqlite3.connect(env["state"] / "memory.db")
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    snap = create_snapshot("manual")
    assert verify_snapshot(snap) == []
