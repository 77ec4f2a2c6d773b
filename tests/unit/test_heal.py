"""REC_02 / MEM_02: `ark heal` on a whole fake host laid out under a temp root prefix.

Everything is real: directories with owners and modes (the service user is `nobody` here so
chown is exercised), a SQLite store with snapshots, env files checked by envcheck, the
ruleset, and a venv whose RECORD hashes are checked against a runtime.lock.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from ark_runtime.cli import main
from ark_runtime.host.bootstate import FILENAME, load_boot_state, write_boot_state
from ark_runtime.host.heal.healer import Healer, Layout, parse_lock
from ark_runtime.host.snapshot.snapshots import create_snapshot, list_snapshots, verify_snapshot
from ark_runtime.store import MemoryStore
from tests.support.store_sql import integrity_ok, object_count

pytestmark = pytest.mark.requirement("REC_02")
REPO = Path(__file__).resolve().parents[2]
SECRET = "zq-Very-Secret-Value-0123456789abcdef"
INFRA_ENV = (
    "ARK_ENVIRONMENT=production\nARK_API_PORT=8101\nARK_REDIS_HOST=127.0.0.1\n"
    f"ARK_REDIS_PORT=6379\nARK_REDIS_PASSWORD={SECRET}\n"
)
LOCK = (
    "# generated\n"
    "fakepkg==1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via -r requirements.in\n"
    "Other_Pkg==2.5 \\\n    --hash=sha256:" + "b" * 64 + "\n"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_dist(site: Path, name: str, version: str, files: dict[str, bytes]) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n")
    rows = []
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
        rows.append(f"{rel},sha256={_b64(data)},{len(data)}")
    meta = (info / "METADATA").read_bytes()
    rows.append(f"{info.name}/METADATA,sha256={_b64(meta)},{len(meta)}")
    rows.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    root = tmp_path / "root"
    for var in ("ARK_STATE_DIR", "ARK_LOG_DIR", "ARK_CONFIG_DIR", "ARK_STORE_PATH",
                "ARK_HRM_RULESET", "ARK_SNAPSHOT_DIR", "ARK_VENV", "ARK_RUNTIME_LOCK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ARK_ROOT_PREFIX", str(root))
    monkeypatch.setenv("ARK_USER", "nobody")
    monkeypatch.setenv("ARK_GROUP", "nogroup")
    monkeypatch.setenv("ARK_RUN_DIR", str(tmp_path / "run"))
    lay = Layout.from_env()
    assert lay.state == root / "var/lib/ark"
    # venv from the lock
    lock = root / "opt/ark/wheelhouse/runtime.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(LOCK)
    h12 = hashlib.sha256(LOCK.rstrip("\n").encode()).hexdigest()
    venv = root / "opt/ark/venvs" / h12[:12]
    site = venv / "lib/python3.11/site-packages"
    make_dist(site, "fakepkg", "1.0", {"fakepkg/__init__.py": b"VALUE = 1\n",
                                       "../../../bin/fake": b"#!/bin/sh\n"})
    make_dist(site, "other_pkg", "2.5", {"other_pkg.py": b"X = 2\n"})
    make_dist(site, "pip", "23.0", {"pip/__init__.py": b""})  # venv bootstrap, not pinned
    (venv / ".ark-installed").write_text(h12 + "\n")
    (root / "opt/ark/venv").symlink_to(venv)
    # config
    (root / "etc/ark/env").mkdir(parents=True)
    shutil.copy(REPO / "ark_runtime/hrm/HRM_RULESET.yaml", root / "etc/ark/HRM_RULESET.yaml")
    env_file = root / "etc/ark/env/infrastructure.env"
    env_file.write_text(INFRA_ENV)
    env_file.chmod(0o600)
    # state: a store with data and a snapshot
    lay.state.mkdir(parents=True)
    lay.log.mkdir(parents=True)
    with MemoryStore(lay.store) as store:
        for i in range(3):
            store.save("tick", {"i": i})
    create_snapshot("interval", store=lay.store, root=lay.snapshots, config_dir=lay.config)
    write_boot_state(lay.state, snapshot_id=None, last_clean_shutdown_at="2026-01-01T00:00:00")
    # First heal fixes modes/owners of the fresh layout and saves the LKG copies.
    assert Healer(lay).run() == 0
    return lay


def run_heal(*args: str) -> tuple[int, dict]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["heal", "--json", *args])
    return code, json.loads(out.getvalue())


def by(doc: dict, check: str) -> list[dict]:
    return [f for f in doc["findings"] if f["check"] == check]


def test_healthy_host(host: Layout) -> None:
    code, doc = run_heal()
    assert code == 0 and doc["safe"]
    assert {f["status"] for f in doc["findings"]} == {"ok"}
    assert {f["check"] for f in doc["findings"]} == {"dirs", "config", "venv", "store",
                                                     "boot_state"}
    st = host.state.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o770)
    assert stat.S_IMODE((host.config / "env").stat().st_mode) == 0o700
    lkg = host.lkg / "env/infrastructure.env"
    assert lkg.read_text() == INFRA_ENV and stat.S_IMODE(lkg.stat().st_mode) == 0o600
    assert stat.S_IMODE(host.lkg.stat().st_mode) == 0o700
    lines = (host.log / "heal.log").read_text().splitlines()
    assert json.loads(lines[-1]) | {"ts": 0, "run": 0} == {
        "ts": 0, "run": 0, "event": "heal_result", "dry_run": False, "safe": True}
    assert SECRET not in (host.log / "heal.log").read_text()


def test_missing_and_wrong_directories_are_repaired(host: Layout) -> None:
    shutil.rmtree(host.log)
    host.state.chmod(0o777)
    os.chown(host.config, 0, 0)
    code, doc = run_heal()
    assert code == 0
    fixed = {f["target"]: f["detail"] for f in by(doc, "dirs") if f["status"] == "repaired"}
    assert "missing: recreated nobody:nogroup 0750" in fixed[str(host.log)]
    assert "mode 0777" in fixed[str(host.state)]
    assert "owner root:root" in fixed[str(host.config)]
    for path, uid, gid, mode in ((host.log, 65534, 65534, 0o750),
                                 (host.state, 65534, 65534, 0o770),
                                 (host.config, 0, 65534, 0o750)):
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, mode), path


def test_bad_config_falls_back_to_last_known_good(host: Layout) -> None:
    env_file = host.config / "env/infrastructure.env"
    env_file.write_text(INFRA_ENV.replace("ARK_API_PORT=8101", "ARK_API_PORT=99999"))
    ruleset = host.config / "HRM_RULESET.yaml"
    good_rules = ruleset.read_bytes()
    ruleset.write_text("rules: [{id: X}]\n")
    code, doc = run_heal()
    assert code == 0
    fixed = [f for f in by(doc, "config") if f["status"] == "repaired"]
    assert {f["target"] for f in fixed} == {str(env_file), str(ruleset)}
    assert "ARK_API_PORT" in next(f for f in fixed if f["target"] == str(env_file))["detail"]
    assert env_file.read_text() == INFRA_ENV and stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert ruleset.read_bytes() == good_rules
    rejected = sorted(p.name for p in (host.lkg / "rejected").iterdir())
    assert len(rejected) == 2  # the bad edits are kept, not lost


def test_bad_config_without_lkg_refuses_and_changes_nothing(host: Layout,
                                                            capsys: pytest.CaptureFixture[str],
                                                            ) -> None:
    shutil.rmtree(host.lkg)
    env_file = host.config / "env/infrastructure.env"
    bad = INFRA_ENV.replace("ARK_ENVIRONMENT=production", "ARK_ENVIRONMENT=prod")
    env_file.write_text(bad)
    assert main(["heal"]) == 1
    err = capsys.readouterr().err
    assert "ARK_ENVIRONMENT" in err and "no last known good copy" in err
    assert "HOST IS NOT SAFE" in err and SECRET not in err
    assert env_file.read_text() == bad
    assert not (host.lkg / "env/infrastructure.env").exists()  # a bad file never becomes LKG


def test_untrusted_lkg_is_not_used(host: Layout) -> None:
    host.lkg.chmod(0o755)  # someone opened it up: it could have been planted
    (host.config / "HRM_RULESET.yaml").write_text("nonsense: [\n")
    code, doc = run_heal()
    assert code == 1
    [f] = [f for f in by(doc, "config") if f["status"] == "failed"]
    assert "no last known good copy" in f["detail"]


def test_corrupt_store_restored_from_snapshot_with_loss_reported(host: Layout) -> None:
    [snap] = list_snapshots(host.snapshots)
    with MemoryStore(host.store) as store:
        store.save("tick", {"i": "after snapshot"})
    data = bytearray(host.store.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)  # every page after the header page
    host.store.write_bytes(bytes(data))
    code, doc = run_heal()
    assert code == 0, doc
    [f] = by(doc, "store")
    assert f["status"] == "repaired" and f["data"]["snapshot"] == snap.id
    assert 0 <= f["data"]["data_loss_bound_seconds"] < 120
    with MemoryStore(host.store) as store:
        assert integrity_ok(store) and object_count(store) == 3
    assert host.store.stat().st_uid == 65534  # ark (here: nobody) can still open it
    # SQLite cannot copy this damaged file, so its raw bytes are kept, owned by ark.
    assert "damaged file kept in" in f["data"]["pre_restore"]
    [kept] = (host.state / "damaged").glob("*/memory.db")
    assert kept.read_bytes() == bytes(data)
    assert {p.stat().st_uid for p in [host.state / "damaged", kept]} == {65534}
    [bs] = by(doc, "boot_state")
    assert bs["status"] == "repaired"
    state = load_boot_state(host.state)
    assert state["snapshot_id"] == snap.id and state["rewrite_reason"]


def test_schema_mismatch_restores_and_keeps_current_as_pre_restore(host: Layout) -> None:
    import sqlite3

    con = sqlite3.connect(host.store)
    con.execute("ALTER TABLE objects ADD COLUMN surprise TEXT")
    con.commit()
    con.close()
    code, doc = run_heal()
    assert code == 0
    [f] = by(doc, "store")
    assert f["status"] == "repaired" and "schema does not match" in f["detail"]
    [pre] = [s for s in list_snapshots(host.snapshots) if s.manifest["reason"] == "pre-restore"]
    assert {p.stat().st_uid for p in [host.snapshots, pre.path, *pre.path.iterdir()]} == {65534}


def test_corrupt_store_without_verified_snapshot_fails_untouched(host: Layout) -> None:
    for s in list_snapshots(host.snapshots):
        (s.path / "memory.db").write_bytes(b"rot")
    host.store.write_bytes(b"this is not sqlite" * 300)
    before = host.store.read_bytes()
    code, doc = run_heal()
    assert code == 1
    [f] = by(doc, "store")
    assert f["status"] == "failed" and "no snapshot" in f["detail"]
    assert host.store.read_bytes() == before


def test_missing_store_first_boot_is_fine(host: Layout) -> None:
    shutil.rmtree(host.snapshots)
    host.store.unlink()
    code, doc = run_heal()
    assert code == 0 and "first start" in by(doc, "store")[0]["detail"]


@pytest.mark.parametrize("tamper", ["edit_file", "delete_file", "version", "extra_dist",
                                    "marker", "missing_pin", "planted_pth"])
def test_venv_tampering_is_refused(host: Layout, tamper: str) -> None:
    site = next(host.venv.resolve().glob("lib/python3*/site-packages"))
    if tamper == "edit_file":
        (site / "fakepkg/__init__.py").write_text("VALUE = 2  # evil\n")
        expect = "fakepkg/__init__.py: sha256 differs from RECORD"
    elif tamper == "delete_file":
        (host.venv / "bin/fake").unlink()
        expect = "../../../bin/fake: missing"
    elif tamper == "version":
        meta = site / "other_pkg-2.5.dist-info/METADATA"
        meta.write_text(meta.read_text().replace("2.5", "2.6"))
        expect = "other_pkg is 2.6, runtime.lock pins 2.5"
    elif tamper == "extra_dist":
        make_dist(site, "sneaky", "0.1", {"sneaky.py": b"import os\n"})
        expect = "sneaky 0.1 is installed but not in runtime.lock"
    elif tamper == "marker":
        (host.venv / ".ark-installed").write_text("0" * 64)
        expect = "not completely installed from this runtime.lock"
    elif tamper == "planted_pth":
        (site / "zz-evil.pth").write_text("import os; os.system('id')\n")
        expect = "zz-evil.pth: not installed by any dist in runtime.lock (planted?)"
    else:
        shutil.rmtree(site / "other_pkg-2.5.dist-info")
        expect = "other-pkg==2.5 is in runtime.lock but not installed"
    code, doc = run_heal()
    assert code == 1
    [f] = by(doc, "venv")
    assert f["status"] == "failed" and expect in f["detail"] and "redeploy" in f["detail"]


def test_bad_boot_state_rewritten(host: Layout) -> None:
    path = host.state / FILENAME
    doc = json.loads(path.read_text())
    doc["payload"]["snapshot_id"] = "forged"
    path.write_text(json.dumps(doc))
    code, out = run_heal()
    assert code == 0
    [f] = by(out, "boot_state")
    assert f["status"] == "repaired" and "checksum mismatch" in f["detail"]
    state = load_boot_state(host.state)
    assert state["snapshot_id"] == list_snapshots(host.snapshots)[0].id
    assert state["last_clean_shutdown_at"] is None  # not trusted from the bad file


def test_panic_flag_refuses_until_cleared(host: Layout, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    flag = host.state / "PANIC"
    flag.write_text("panic by alice at 2026-11-26T10:00:00Z\n")
    assert main(["heal"]) == 77  # ExitCode.NOPERM: the panic flag forbids starting
    assert "host is in panic state; run invoke recover" in capsys.readouterr().err
    assert flag.exists()
    assert main(["heal", "--dry-run", "--clear-panic"]) == 0
    assert flag.exists()
    monkeypatch.setenv("SUDO_USER", "root-shell")
    monkeypatch.setenv("ARK_ACTOR", "bob")  # what `invoke recover` passes
    assert main(["heal", "--clear-panic"]) == 0
    assert not flag.exists()
    log = [json.loads(x) for x in (host.log / "heal.log").read_text().splitlines()]
    [cleared] = [x for x in log if x.get("check") == "panic" and x["status"] == "repaired"]
    assert cleared["data"]["cleared_by"] == "bob" and "alice" in cleared["data"]["flag"]


def test_dry_run_changes_nothing(host: Layout) -> None:
    shutil.rmtree(host.log)
    host.store.write_bytes(b"junk" * 1000)
    before = host.store.read_bytes()
    snaps = [s.id for s in list_snapshots(host.snapshots)]
    code, doc = run_heal("--dry-run")
    assert code == 0
    statuses = {f["check"]: f["status"] for f in doc["findings"] if f["status"] != "ok"}
    assert statuses == {"dirs": "would_repair", "store": "would_repair"}
    assert not host.log.exists()
    assert host.store.read_bytes() == before
    assert [s.id for s in list_snapshots(host.snapshots)] == snaps


def test_parse_lock_normalises_names() -> None:
    assert parse_lock(LOCK) == {"fakepkg": "1.0", "other-pkg": "2.5"}
    real = parse_lock((REPO / "requirements.lock").read_text())
    assert real["pyyaml"] and len(real) >= 40


@pytest.mark.parametrize("bad", [
    "rules: [null]\n",  # a non-mapping rule: TypeError in the loader before it refused it
    "rules: [1, two]\n",
    "rules: {not: a list}\n",
    "- a list, not a mapping\n",
    "rules: [\n",  # not YAML
    "",
])
def test_any_invalid_ruleset_falls_back_to_last_known_good(host: Layout, bad: str) -> None:
    ruleset = host.config / "HRM_RULESET.yaml"
    good_rules = ruleset.read_bytes()
    ruleset.write_text(bad)
    code, doc = run_heal()
    assert code == 0, doc
    fixed = [f for f in by(doc, "config") if f["target"] == str(ruleset)]
    assert fixed and fixed[0]["status"] == "repaired", fixed
    assert "restored last known good copy" in fixed[0]["detail"]
    assert ruleset.read_bytes() == good_rules
    assert [p.read_text() for p in (host.lkg / "rejected").iterdir()] == [bad]


def _to_legacy(snap_dir: Path) -> None:
    """Rewrite a manifest the way snapshots were written before manifests were keyed."""
    payload = json.loads((snap_dir / "manifest.json").read_text())["payload"]
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    (snap_dir / "manifest.json").write_text(json.dumps(
        {"payload": payload, "sha256": hashlib.sha256(raw.encode()).hexdigest()}))


def test_upgrade_signs_unkeyed_snapshots_once_and_still_restores(host: Layout) -> None:
    (snap,) = list_snapshots(host.snapshots)
    _to_legacy(snap.path)
    (host.config / "snapshot.key").unlink()  # the host before the upgrade had none
    host.store.write_bytes(b"corrupt" * 1000)
    code, doc = run_heal()
    assert code == 0, doc
    (key,) = by(doc, "snapshot_key")
    assert key["status"] == "repaired" and key["data"]["adopted"] == [snap.id]
    (store,) = by(doc, "store")
    assert store["status"] == "repaired" and store["data"]["snapshot"] == snap.id
    # Once the key exists, an unkeyed manifest is a forgery: never adopted again.
    _to_legacy(snap.path)
    code, doc = run_heal()
    assert not by(doc, "snapshot_key")
    assert any("checksum" in p for p in verify_snapshot(list_snapshots(host.snapshots)[0]))


@pytest.mark.requirement("REC_02")
def test_an_older_schema_is_reported_as_older_not_as_corruption(host: Layout) -> None:
    import sqlite3

    con = sqlite3.connect(host.store)  # what the previous release wrote: no version
    con.execute("PRAGMA user_version = 0")
    con.commit()
    con.close()
    before = host.store.read_bytes()
    code, doc = run_heal()
    assert code == 0
    [f] = by(doc, "store")
    assert f["status"] == "ok" and "older schema v1, not corruption" in f["detail"]
    assert host.store.read_bytes() == before  # heal is read-only; HRM migrates on start
    con = sqlite3.connect(host.store)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    code, doc = run_heal()
    [f] = by(doc, "store")
    assert f["status"] == "failed" and "newer ARK release" in f["detail"]
