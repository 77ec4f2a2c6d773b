"""MEM_03 / issue #7 §4: one bad snapshot manifest never breaks recovery for the others, and a
manifest is authenticated (HMAC-SHA256 under the per-host key) and bound to its directory.

Every test uses real snapshots of a real SQLite store; the bad manifests are real files on disk,
signed with the host key where the point is that the *field* is wrong (so the signature check
cannot be what catches it).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ark_runtime.cli import main
from ark_runtime.host.snapshot import manifest
from ark_runtime.host.snapshot.restore import restore
from ark_runtime.host.snapshot.retention import Policy, plan_prune, prune
from ark_runtime.host.snapshot.snapshots import (
    Snapshot,
    create_snapshot,
    list_snapshots,
    newest_verified,
    verify_snapshot,
)
from ark_runtime.store import MemoryStore

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
    for var in ("ARK_STORE_PATH", "ARK_SNAPSHOT_DIR", "SERVICE_RESULT", "ARK_HRM_RULESET",
                "ARK_ROOT_PREFIX", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    with MemoryStore(dirs["state"] / "memory.db") as store:
        for i in range(3):
            store.save("tick", {"i": i})
    return dirs


def _rows(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM objects").fetchone()[0]
    finally:
        con.close()


def _payload(snap: Snapshot) -> dict[str, Any]:
    return json.loads((snap.path / "manifest.json").read_text())["payload"]


def _write(snap_dir: Path, payload: Any, *, signed: bool = True) -> None:
    if signed and isinstance(payload, dict):
        text = manifest.render(payload, manifest.load_key())
    else:
        text = json.dumps({"payload": payload, "hmac_sha256": "0" * 64})
    (snap_dir / "manifest.json").write_text(text)


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# --- the two crashes the fuzzing found --------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "named"), [
    ("created_at", "2026-11-26T12:00:00", "payload.created_at"),  # naive: the sort raised
    ("files", {"memory.db": "not an object"}, "payload.files['memory.db']"),  # AttributeError
    ("files", ["memory.db"], "payload.files"),
    ("created_at", "0001-01-01T00:00:00+14:00", "payload.created_at"),  # OverflowError
    ("created_at", "9999-12-31T23:59:59-14:00", "payload.created_at"),
])
def test_one_bad_manifest_is_reported_and_the_others_still_recover(
        env: dict[str, Path], field: str, value: object, named: str) -> None:
    good = create_snapshot("interval")
    with MemoryStore(env["state"] / "memory.db") as store:
        store.save("tick", {"i": 99})
    bad = create_snapshot("interval")  # the newest: it would be chosen if it were good
    payload = _payload(bad)
    payload[field] = value
    _write(bad.path, payload)

    snaps = list_snapshots()  # sorting must not raise
    assert {s.id for s in snaps} == {good.id, bad.id}
    problems = verify_snapshot(next(s for s in snaps if s.id == bad.id))
    assert any(named in p for p in problems), problems
    assert newest_verified().id == good.id
    code, out, err = _cli("snapshot", "verify")
    assert code == 65 and f"{bad.id}: manifest.json: {named}" in err and f"{good.id}: ok" in out
    code, out, _ = _cli("snapshot", "list", "--json", "--verify")
    assert code == 0
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows[good.id]["verified"] and not rows[bad.id]["verified"]
    kept, removed = prune(policy=Policy(keep_last=1, keep_hourly=0, keep_daily=0), dry_run=True)
    assert good.id in {s.id for s in kept}  # the newest verified is always kept

    # A corrupt store is still restored, from the newest good snapshot.
    (env["state"] / "memory.db").write_bytes(b"this is not sqlite" * 100)
    res = restore("latest")
    assert res.snapshot.id == good.id and _rows(env["state"] / "memory.db") == 3


def test_heal_restores_a_corrupt_store_past_a_bad_manifest(env: dict[str, Path]) -> None:
    from ark_runtime.host.heal.healer import Healer
    from ark_runtime.host.heal.store import check_store
    from ark_runtime.host.layout import Layout

    good = create_snapshot("interval")
    bad = create_snapshot("interval")
    payload = _payload(bad)
    payload["created_at"] = "2099-01-01T00:00:00"  # naive, and "newest" if it were trusted
    _write(bad.path, payload)
    (env["state"] / "memory.db").write_bytes(b"garbage" * 500)
    healer = Healer(Layout.from_env())
    assert check_store(healer) is True
    finding = healer.findings[-1]
    assert finding.status == "repaired" and finding.data["snapshot"] == good.id
    assert _rows(env["state"] / "memory.db") == 3


# --- authentication and binding ---------------------------------------------------------------


def test_manifest_copied_from_another_snapshot_does_not_verify(env: dict[str, Path]) -> None:
    first = create_snapshot("interval")
    second = create_snapshot("interval")
    # Identical content: the copy's files would all match; only the id binds it.
    shutil.copy(first.path / "manifest.json", second.path / "manifest.json")
    shutil.copy(first.path / "memory.db", second.path / "memory.db")
    problems = verify_snapshot(Snapshot(second.id, second.path))
    assert any(p.startswith("manifest.json: payload.id") and first.id in p for p in problems)
    assert verify_snapshot(Snapshot(first.id, first.path)) == []


def test_recomputed_unkeyed_checksum_does_not_verify(env: dict[str, Path]) -> None:
    import hashlib

    snap = create_snapshot("interval")
    payload = _payload(snap)
    payload["reason"] = "manual"
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    forged = {"payload": payload, "sha256": hashlib.sha256(raw).hexdigest(),
              "hmac_sha256": hashlib.sha256(raw).hexdigest()}
    (snap.path / "manifest.json").write_text(json.dumps(forged))
    problems = verify_snapshot(Snapshot(snap.id, snap.path))
    assert any(p.startswith("manifest.json: checksum mismatch") for p in problems), problems


def test_another_hosts_key_does_not_verify(env: dict[str, Path]) -> None:
    snap = create_snapshot("interval")
    (snap.path / "manifest.json").write_text(manifest.render(_payload(snap), os.urandom(32)))
    assert any("checksum mismatch" in p for p in verify_snapshot(Snapshot(snap.id, snap.path)))


def test_key_is_created_once_root_only(env: dict[str, Path]) -> None:
    create_snapshot("interval")
    key = env["config"] / "snapshot.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    create_snapshot("interval")
    assert key.read_bytes() == before and len(bytes.fromhex(before.decode().strip())) == 32


def test_systemd_credential_is_used_before_the_key_file(env: dict[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "snapshot-key").write_text(os.urandom(32).hex())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    snap = create_snapshot("interval")
    assert not (env["config"] / "snapshot.key").exists()  # the credential signed it
    assert verify_snapshot(snap) == []
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    manifest.ensure_key(env["config"] / "snapshot.key")  # a different key
    assert any("checksum mismatch" in p for p in verify_snapshot(snap))


def test_without_key_access_create_refuses_in_one_sentence() -> None:
    """As the ark user, without the credential: one sentence, exit 77, nothing written."""
    import subprocess
    import sys
    import tempfile

    repo = Path(__file__).resolve().parents[2]
    # Its own directory tree (not pytest's 0700 one) so the unprivileged user can reach it.
    top = Path(tempfile.mkdtemp(prefix="ark-key-test-"))
    try:
        config, state = top / "etc", top / "state"
        for d in (top, config, state):
            d.mkdir(exist_ok=True)
            d.chmod(0o755)  # root's /etc/ark: readable, not writable, no key yet
        cmd = [sys.executable, "-m", "ark_runtime.cli", "snapshot", "create"]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARK_")}
        env |= {"PYTHONPATH": str(repo), "ARK_CONFIG_DIR": str(config),
                "ARK_STATE_DIR": str(state), "ARK_RUN_DIR": str(top / "run")}
        proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=60,
                              env=env)
        assert proc.returncode == 77, proc.stderr
        assert proc.stderr.count("\n") == 1 and "only root may" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (config / "snapshot.key").exists() and not (state / "snapshots").exists()
    finally:
        shutil.rmtree(top)


# --- property: no manifest crashes anything, each is reported naming its field ----------------

_EDGE_OFFSETS = st.sampled_from([None, UTC, timezone(timedelta(hours=14)),
                                 timezone(timedelta(hours=-14)),
                                 timezone(timedelta(hours=23, minutes=59))])
_DATETIMES = st.datetimes(min_value=datetime.min, max_value=datetime.max,
                          timezones=_EDGE_OFFSETS).map(lambda d: d.isoformat())
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8,
)
_FILE_ENTRIES = st.dictionaries(
    st.sampled_from(["memory.db", "../x", "", "a/b", "manifest.json", "other"]),
    _JSON | st.fixed_dictionaries({"sha256": _JSON | st.just("0" * 64), "size": _JSON}),
    max_size=3)
_MUTATIONS = st.one_of(
    st.tuples(st.just("created_at"), _DATETIMES | _JSON),
    st.tuples(st.just("files"), _FILE_ENTRIES | _JSON),
    st.tuples(st.sampled_from(["id", "reason", "integrity_check"]), _JSON),
)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=_MUTATIONS, signed=st.booleans())
@example(mutation=("created_at", "0001-01-01T00:00:00+14:00"), signed=True)
@example(mutation=("created_at", "9999-12-31T23:59:59-14:00"), signed=True)
@example(mutation=("created_at", "9999-12-31T23:59:59.999999"), signed=True)
@example(mutation=("files", {"memory.db": None}), signed=True)
def test_no_malformed_manifest_crashes_and_each_names_its_field(
        env: dict[str, Path], mutation: tuple[str, Any], signed: bool) -> None:
    root = env["state"] / "snapshots"
    if not root.is_dir() or not any(root.iterdir()):
        create_snapshot("interval")
    good = next(s for s in list_snapshots() if not s.id.startswith("z"))
    bad_dir = root / "zz-bad"
    shutil.rmtree(bad_dir, ignore_errors=True)
    shutil.copytree(good.path, bad_dir)
    payload = _payload(good) | {"id": "zz-bad"}
    field, value = mutation
    payload[field] = value
    _write(bad_dir, payload, signed=signed)

    snaps = list_snapshots()
    bad = next(s for s in snaps if s.id == "zz-bad")
    problems = verify_snapshot(bad)
    field_problems = manifest.payload_problems(payload, "zz-bad")
    if field_problems:
        # Reported, naming the field (signed: only the field can be what is wrong).
        assert problems
        if signed:
            assert any(f"manifest.json: payload.{field}" in p for p in problems), problems
    if problems:
        assert newest_verified().id == good.id
    plan_prune(snaps, Policy())
    prune(policy=Policy(keep_last=1, keep_hourly=1, keep_daily=1), dry_run=True)
    code, out, _ = _cli("snapshot", "list", "--json", "--verify")
    assert code == 0 and json.loads(out)
    assert _cli("snapshot", "verify")[0] in (0, 65)
    assert restore("latest", take_pre_restore=False).snapshot.id in {good.id, "zz-bad"}
