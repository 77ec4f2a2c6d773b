"""Issue 22 §3: rotating the snapshot key keeps every snapshot the old key verified restorable,
keeps a tampered one refused, and refuses a snapshot signed with a rotated-away key.

Real snapshots of a real SQLite store, the real `ark snapshot rotate-key` command; the key
values never appear in anything the command prints.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from ark_runtime.host.snapshot import keyrotate, manifest
from ark_runtime.host.snapshot.restore import restore
from ark_runtime.host.snapshot.snapshots import (
    Snapshot,
    SnapshotKeyError,
    create_snapshot,
    list_snapshots,
    verify_snapshot,
)
from ark_runtime.store import MemoryStore
from tests.unit.test_snapshot_manifest import _cli, _payload, _rows, env  # noqa: F401

pytestmark = pytest.mark.requirement("MEM_03")


def _key(config: Path) -> str:
    return (config / "snapshot.key").read_text().strip()


def test_an_old_snapshot_restores_after_rotation_and_a_tampered_one_stays_refused(
        env: dict[str, Path]) -> None:  # noqa: F811
    good = create_snapshot("interval")
    tampered = create_snapshot("interval")
    payload = _payload(tampered)
    payload["reason"] = "manual"  # edited after signing, signature left as it was
    doc = json.loads((tampered.path / "manifest.json").read_text())
    doc["payload"] = payload
    (tampered.path / "manifest.json").write_text(json.dumps(doc))
    assert verify_snapshot(Snapshot(tampered.id, tampered.path))  # refused before
    old_key = _key(env["config"])

    code, out, err = _cli("snapshot", "rotate-key")

    assert code == 0, err
    new_key = _key(env["config"])
    assert new_key != old_key
    assert "1 snapshot(s) re-signed" in out and "1 left refused" in out
    audit = (Path(os.environ["ARK_AUDIT_DIR"]) / "audit.log").read_text()
    assert '"snapshot.rotate-key"' in audit  # who and when, on the host's chain
    for text in (out, err, audit):
        assert old_key not in text and new_key not in text
    assert verify_snapshot(Snapshot(good.id, good.path)) == []
    assert any("checksum mismatch" in p for p in verify_snapshot(Snapshot(tampered.id,
                                                                          tampered.path)))
    # The store breaks; the pre-rotation snapshot is what restore finds and trusts.
    (env["state"] / "memory.db").write_bytes(b"not a database")
    res = restore(good.id, take_pre_restore=False)
    assert res.snapshot.id == good.id and _rows(env["state"] / "memory.db") == 3
    # A manifest signed with the old key is a forgery now.
    (good.path / "manifest.json").write_text(manifest.render(_payload(good),
                                                             bytes.fromhex(old_key)))
    assert any("checksum mismatch" in p for p in verify_snapshot(Snapshot(good.id, good.path)))


def test_new_snapshots_after_rotation_verify(env: dict[str, Path]) -> None:  # noqa: F811
    create_snapshot("interval")
    assert _cli("snapshot", "rotate-key")[0] == 0
    fresh = create_snapshot("manual")
    assert all(not s.problems for s in list_snapshots()) and verify_snapshot(fresh) == []


def test_a_process_holding_the_rotated_away_key_is_refused(
        env: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """ark-snapshot.service got the key as a credential when it started; a rotation ran since."""
    create_snapshot("interval")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "snapshot-key").write_text(_key(env["config"]))  # the copy systemd made
    assert _cli("snapshot", "rotate-key")[0] == 0
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    before = {p.name for p in (env["state"] / "snapshots").iterdir()}
    with pytest.raises(SnapshotKeyError, match="rotated after this process loaded it"):
        create_snapshot("interval")
    assert {p.name for p in (env["state"] / "snapshots").iterdir()} == before  # nothing left


def test_an_interrupted_rotation_is_finished_by_running_it_again(
        env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    snaps = [create_snapshot("interval") for _ in range(3)]
    real = keyrotate.rewrite_keeping_owner
    calls = {"n": 0}

    def crash_on_second(path: Path, text: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("power cut")
        real(path, text)

    monkeypatch.setattr(keyrotate, "rewrite_keeping_owner", crash_on_second)
    with pytest.raises(OSError):
        keyrotate.rotate_key(env["state"] / "snapshots", env["config"] / "snapshot.key")
    monkeypatch.setattr(keyrotate, "rewrite_keeping_owner", real)
    assert (env["config"] / "snapshot.key.new").exists()

    done = keyrotate.rotate_key(env["state"] / "snapshots", env["config"] / "snapshot.key")

    assert len(done.resigned) == 2 and len(done.already_new) == 1 and not done.refused
    assert not (env["config"] / "snapshot.key.new").exists()
    assert all(verify_snapshot(Snapshot(s.id, s.path)) == [] for s in snaps)


def test_rotation_without_a_key_says_so(env: dict[str, Path]) -> None:  # noqa: F811
    code, _out, err = _cli("snapshot", "rotate-key")
    assert code == 1 and "no snapshot key" in err and err.count("\n") == 1


def test_a_store_written_while_rotating_is_unaffected(env: dict[str, Path]) -> None:  # noqa: F811
    """Rotation only touches manifests and the key: the live store keeps taking writes."""
    create_snapshot("interval")
    with MemoryStore(env["state"] / "memory.db") as store:
        assert _cli("snapshot", "rotate-key")[0] == 0
        store.save("tick", {"i": 99})
    con = sqlite3.connect(env["state"] / "memory.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    assert os.stat(env["config"] / "snapshot.key").st_mode & 0o777 == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership needs root, as the host's rotation runs")
def test_a_rotation_before_the_first_snapshot_leaves_the_directory_to_the_state_owner(
        env: dict[str, Path]) -> None:  # noqa: F811
    """On the lab, `secrets.rotate snapshot-key` on a fresh host made the snapshot directory
    root's, and ark-snapshot.service (user ark) then failed with Permission denied."""
    manifest.ensure_key(env["config"] / "snapshot.key")
    os.chown(env["state"], 65534, 65534)  # the state directory belongs to the service user
    snapshots = env["state"] / "snapshots"
    assert not snapshots.exists()

    assert _cli("snapshot", "rotate-key")[0] == 0

    st = snapshots.stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership needs root, as `ark snapshot` by hand")
def test_a_first_snapshot_taken_by_root_leaves_everything_to_the_state_owner(
        env: dict[str, Path]) -> None:  # noqa: F811
    """The lab's rotation test took its snapshots by hand as root on a fresh host: the
    directory was root's, and the interval unit (user ark) failed with Permission denied."""
    os.chown(env["state"], 65534, 65534)
    snap = create_snapshot("manual")
    for path in (snap.path.parent, snap.path, *snap.path.rglob("*")):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (65534, 65534), path
