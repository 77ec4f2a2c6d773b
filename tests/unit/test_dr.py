"""REC_03: the DR bundle round trip, redaction, and refusal of malicious archives.

Host A and host B are two directory trees under temp root prefixes (ARK_ROOT_PREFIX), with a
real SQLite store, real snapshots, logs, env files and unit files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from ark_runtime.cli import main
from ark_runtime.host.dr.bundle import create_bundle
from ark_runtime.host.dr.format import BundleError, Sources
from ark_runtime.host.dr.restore import restore_bundle, verify_bundle
from ark_runtime.host.layout import Layout
from ark_runtime.host.snapshot.snapshots import create_snapshot, list_snapshots
from ark_runtime.store import MemoryStore

pytestmark = pytest.mark.requirement("REC_03")
SECRET = "zq-Very-Secret-Value-0123456789abcdef"
UNKNOWN_SECRET = "mystery-token-should-never-leak"


def _env(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    for var in ("ARK_STATE_DIR", "ARK_LOG_DIR", "ARK_CONFIG_DIR", "ARK_STORE_PATH",
                "ARK_HRM_RULESET", "ARK_SNAPSHOT_DIR", "ARK_UNIT_DIR", "ARK_DR_SNAPSHOTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ARK_ROOT_PREFIX", str(root))


def populate(root: Path, decisions: int = 4) -> Layout:
    lay = Layout.from_env({"ARK_ROOT_PREFIX": str(root)})
    lay.log.mkdir(parents=True)
    for name in ("hrm.log", "kyle.log", "audit.log", "governance.log"):
        (lay.log / name).write_text(
            "".join(json.dumps({"agent": name, "n": i}) + "\n" for i in range(50)))
    (lay.log / "kyle.log.1.gz").write_bytes(gzip.compress(b'{"old": 1}\n'))
    with MemoryStore(lay.store) as store:
        for i in range(decisions):
            plan = store.save("plan", {"symbol": "AAPL", "n": i, "direction": "long",
                                       "entry": 100.0 + i, "stop_loss": 95.0, "target": 110.0,
                                       "quantity": 10, "position_size": 0.05})
            store.record_decision(f"corr-{i}", plan, i % 2 == 0, [])
            if i % 2 == 0:
                store.open_position(f"corr-{i}", plan)
    create_snapshot("interval", store=lay.store, root=lay.snapshots, config_dir=lay.config)
    (lay.config / "env").mkdir(parents=True)
    (lay.config / "HRM_RULESET.yaml").write_text("# ruleset\n")
    (lay.config / "env/infrastructure.env").write_text(
        f"ARK_ENVIRONMENT=production\nARK_API_PORT=8101\nARK_REDIS_PASSWORD={SECRET}\n"
        f"SOME_VENDOR_TOKEN={UNKNOWN_SECRET}\n")
    units = root / "etc/systemd/system"
    (units / "ark-agent@hrm.service.d").mkdir(parents=True)
    (units / "ark-api.service").write_text("[Service]\nExecStart=/opt/ark/venv/bin/ark api\n")
    (units / "ark-agent@hrm.service.d/credentials.conf").write_text("[Service]\n")
    (units / "ark-old.service").symlink_to("/dev/null")  # masked unit
    (units / "other.service").write_text("not ours\n")
    return lay


def state_of(lay: Layout) -> tuple[list, list]:
    with MemoryStore(lay.store) as store:
        return store.decisions(), store.ledger()


def tree(root: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = ("link:" + os.readlink(p) if p.is_symlink() else
                    p.read_bytes() if p.is_file() else "dir")
    return out


@pytest.fixture
def host_a(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    _env(monkeypatch, tmp_path / "a")
    monkeypatch.setenv("ARK_RUN_DIR", str(tmp_path / "run"))
    return populate(tmp_path / "a")


def test_bundle_contents_and_redaction(host_a: Layout, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    res = create_bundle(tmp_path / "out")  # a directory: the file name is chosen
    assert res.path.parent == tmp_path / "out" and res.path.name.endswith(".tar.gz")
    assert stat.S_IMODE(res.path.stat().st_mode) == 0o600
    assert [p.name for p in res.path.parent.iterdir()] == [res.path.name]  # no temp left
    m = verify_bundle(res.path)
    names = set(m["members"])
    assert {"logs/hrm.log", "logs/kyle.log.1.gz", "logs/audit.log", "logs/governance.log",
            "config/HRM_RULESET.yaml", "config/env/infrastructure.env.redacted",
            "units/ark-api.service", "units/ark-agent@hrm.service.d/credentials.conf"} <= names
    assert "units/other.service" not in names
    assert m["members"]["logs/audit.log"]["category"] == "audit"
    assert m["links"] == {"units/ark-old.service": "/dev/null"}
    assert len(m["snapshots"]) == 2 and m["snapshots"][0] == m["fresh_snapshot"]
    assert all(f"snapshots/{s}/memory.db" in names for s in m["snapshots"])
    assert m["host"]["hostname"] and m["host"]["kernel"] and m["runtime_version"]
    assert m["redacted"]["config/env/infrastructure.env.redacted"] == [
        "ARK_REDIS_PASSWORD", "SOME_VENDOR_TOKEN"]
    raw = gzip.decompress(res.path.read_bytes())
    assert SECRET.encode() not in raw and UNKNOWN_SECRET.encode() not in raw
    with tarfile.open(res.path) as tar:
        fh = tar.extractfile("config/env/infrastructure.env.redacted")
        text = fh.read().decode()
    assert "ARK_REDIS_PASSWORD=***" in text and "ARK_API_PORT=8101" in text
    for name, meta in m["members"].items():
        with tarfile.open(res.path) as tar:
            assert hashlib.sha256(tar.extractfile(name).read()).hexdigest() == meta["sha256"]


def test_round_trip_onto_fresh_host(host_a: Layout, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with MemoryStore(host_a.store) as store:  # after the last timer snapshot
        plan = store.save("plan", {"late": True})
        store.record_decision("corr-late", plan, True, [])
    want = state_of(host_a)
    assert main(["dr", "bundle", "--out", str(tmp_path / "b.tar.gz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # The report carries its timing; the 10 s target is measured by benchmarks/dr_bundle_*.py.
    assert info["size"] > 0 and isinstance(info["seconds"], float)
    _env(monkeypatch, tmp_path / "b")
    lay_b = Layout.from_env()
    assert main(["dr", "restore", str(tmp_path / "b.tar.gz")]) == 0
    assert "store restored" in capsys.readouterr().out
    assert state_of(lay_b) == want
    assert (lay_b.log / "hrm.log").read_bytes() == (host_a.log / "hrm.log").read_bytes()
    assert (lay_b.log / "audit.log").exists()
    assert not (lay_b.config / "env").exists()  # secrets come from the deploy, not the bundle
    assert {s.id for s in list_snapshots(lay_b.snapshots)} == set(info["snapshots"])
    # Restoring again onto the same host: no duplicate logs, store identical.
    assert main(["dr", "restore", str(tmp_path / "b.tar.gz")]) == 0
    assert sorted(p.name for p in lay_b.log.iterdir()) == sorted(
        p.name for p in host_a.log.iterdir())
    assert state_of(lay_b) == want


def test_restore_keeps_a_different_local_log(host_a: Layout, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    res = create_bundle(tmp_path / "b.tar.gz")
    _env(monkeypatch, tmp_path / "b")
    lay_b = Layout.from_env()
    lay_b.log.mkdir(parents=True)
    (lay_b.log / "hrm.log").write_text("B's own log\n")
    restore_bundle(res.path)
    assert (lay_b.log / "hrm.log").read_text() == "B's own log\n"
    [renamed] = lay_b.log.glob("hrm.log.restored-*")
    assert renamed.read_bytes() == (host_a.log / "hrm.log").read_bytes()
    assert stat.S_IMODE(renamed.stat().st_mode) == 0o640  # logs are never world-readable


def test_dry_run_writes_nothing(host_a: Layout, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    res = create_bundle(tmp_path / "b.tar.gz")
    _env(monkeypatch, tmp_path / "b")
    (tmp_path / "b").mkdir()
    assert main(["dr", "restore", "--dry-run", str(res.path)]) == 0
    assert tree(tmp_path / "b") == {}


def _rebuild(good: Path, out: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]],
             *, in_manifest: bool = True, tamper: str | None = None) -> Path:
    """A copy of `good` plus `extra` members, with the manifest updated to list them (so only
    the check under test can catch them), or a member changed after the manifest was made."""
    with tarfile.open(good) as src:
        items = [(m, src.extractfile(m).read() if m.isreg() else None) for m in src]
    manifest = json.loads(next(d for m, d in items if m.name == "manifest.json"))
    items = [(m, d) for m, d in items if m.name != "manifest.json"]
    for ti, data in extra:
        if in_manifest and data is not None:
            manifest["members"][ti.name] = {"sha256": hashlib.sha256(data).hexdigest(),
                                            "size": len(data), "category": "logs"}
    if tamper:
        items = [(m, (d + b"x" if m.name == tamper else d)) for m, d in items]
    with tarfile.open(out, "w:gz") as tar:
        for m, data in items + extra:
            if data is not None:
                m.size = len(data)
                tar.addfile(m, io.BytesIO(data))
            else:
                tar.addfile(m)
        raw = json.dumps(manifest).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(raw)
        tar.addfile(ti, io.BytesIO(raw))
    return out


def _reg(name: str, data: bytes = b"evil\n") -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    return ti, data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, target
    return ti, None


def _dev(name: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
    return ti, None


@pytest.mark.parametrize(("case", "expect"), [
    ("absolute", "absolute"),
    ("dotdot", "contains '..'"),
    ("dotdot_inside", "contains '..'"),
    ("symlink_out", "links are refused"),
    ("hardlink_out", "links are refused"),
    ("device", "not a regular file"),
    ("hash_mismatch", "sha256/size differ"),
    ("not_in_manifest", "not in the manifest"),
    ("outside_layout", "outside the bundle layout"),
    ("duplicate", "appears twice"),
    ("snapshot_id", "not a plain name"),
])
def test_malicious_archives_refused_with_nothing_written(
        host_a: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str,
        expect: str, capsys: pytest.CaptureFixture[str]) -> None:
    good = create_bundle(tmp_path / "good.tar.gz").path
    bad = tmp_path / "bad.tar.gz"
    if case == "absolute":
        _rebuild(good, bad, [_reg(str(tmp_path / "pwned"))])
    elif case == "dotdot":
        _rebuild(good, bad, [_reg("../pwned")])
    elif case == "dotdot_inside":
        _rebuild(good, bad, [_reg("logs/../../pwned")])
    elif case == "symlink_out":
        _rebuild(good, bad, [_link("logs/passwd", "/etc/passwd")])
    elif case == "hardlink_out":
        _rebuild(good, bad, [_link("logs/passwd", "/etc/passwd", tarfile.LNKTYPE)])
    elif case == "device":
        _rebuild(good, bad, [_dev("logs/mem")])
    elif case == "hash_mismatch":
        _rebuild(good, bad, [], tamper="logs/hrm.log")
    elif case == "not_in_manifest":
        _rebuild(good, bad, [_reg("logs/extra.log")], in_manifest=False)
    elif case == "outside_layout":
        _rebuild(good, bad, [_reg("etc/cron.d/evil")])
    elif case == "duplicate":
        _rebuild(good, bad, [_reg("logs/hrm.log", b"second copy\n")], in_manifest=False)
    else:
        _rebuild(good, bad, [])
        with tarfile.open(bad) as t:
            items = [(m, t.extractfile(m).read()) for m in t]
        man = json.loads(items[-1][1])
        man["snapshots"] = ["../../../tmp/x"] + man["snapshots"]
        with tarfile.open(bad, "w:gz") as t:
            for m, d in items[:-1] + [(items[-1][0], json.dumps(man).encode())]:
                m.size = len(d)
                t.addfile(m, io.BytesIO(d))
    _env(monkeypatch, tmp_path / "b")
    target = tmp_path / "b"
    populate(target, decisions=1)
    before = tree(target)
    outside = tree(tmp_path / "a")
    capsys.readouterr()
    assert main(["dr", "restore", str(bad)]) == 65  # ExitCode.DATAERR
    err = capsys.readouterr().err
    assert "refused" in err and expect in err, err
    assert tree(target) == before
    assert tree(tmp_path / "a") == outside
    assert not (tmp_path / "pwned").exists()


def test_truncated_bundle_refused(host_a: Layout, tmp_path: Path) -> None:
    res = create_bundle(tmp_path / "b.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(res.path.read_bytes()[: res.size // 2])
    with pytest.raises(BundleError, match="not a readable bundle"):
        verify_bundle(cut)


def test_bundle_refuses_to_write_into_log_dir(host_a: Layout) -> None:
    with pytest.raises(BundleError, match="inside the log dir"):
        create_bundle(host_a.log / "x.tar.gz")
    assert not list(host_a.log.glob("*.tar.gz")) and not list(host_a.log.glob(".*"))


def test_log_dir_flag(host_a: Layout, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "otherlogs"
    other.mkdir()
    (other / "x.log").write_text("x\n")
    assert main(["dr", "bundle", "--log-dir", str(other), "--no-snapshot", "--snapshots", "0",
                 "--out", str(tmp_path / "o.tar.gz")]) == 0
    m = verify_bundle(tmp_path / "o.tar.gz")
    assert [n for n in m["members"] if n.startswith("logs/")] == ["logs/x.log"]
    assert m["snapshots"] == []
    assert isinstance(Sources.from_env(), Sources)


@pytest.mark.parametrize(("damage", "code", "says"), [
    ("store", 1, "cannot copy the database"),  # SnapshotError from the fresh snapshot
    ("key", 0, None),  # no error at all: a snapshot that no longer verifies is not shipped
    ("level", 64, "gzip level must be 1-9"),
])
def test_bundle_failures_are_one_sentence_and_a_code(host_a: Layout, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      damage: str, code: int,
                                                      says: str | None) -> None:
    args = ["dr", "bundle", "--out", str(tmp_path / "b.tar.gz")]
    if damage == "store":
        host_a.store.write_bytes(b"not a database at all " * 200)
    elif damage == "level":
        args += ["--level", "0"]
    else:
        # The host key changed (a re-imaged /etc/ark): old snapshots no longer verify, so the
        # bundle ships only the fresh one, and says so in its manifest.
        (host_a.config / "snapshot.key").unlink()
        assert main(args) == 0
        m = verify_bundle(tmp_path / "b.tar.gz")
        assert m["snapshots"] == [m["fresh_snapshot"]]
        return
    capsys.readouterr()
    assert main(args) == code
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "b.tar.gz").exists()


def test_bundle_and_restore_on_a_host_are_audited(host_a: Layout, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue #17: `ark dr bundle/restore` run on a host leave records in its audit chain,
    # under the operator and correlation id the control node passed (ark_ops/remote/dr_*.sh).
    from ark_runtime.host.audit.chain import iter_records, verify_dir

    audit_dir = Path(os.environ["ARK_AUDIT_DIR"])
    monkeypatch.setenv("ARK_ACTOR", "dana")
    monkeypatch.setenv("ARK_CORRELATION_ID", "c0ffee")
    assert main(["dr", "bundle", "--out", str(tmp_path / "b.tar.gz"), "--json"]) == 0
    assert main(["dr", "restore", "--dry-run", str(tmp_path / "b.tar.gz")]) == 0
    assert main(["dr", "restore", str(tmp_path / "missing.tar.gz")]) != 0
    rows = [(r["action"], r["result"], r["who"], r["correlation_id"])
            for _f, r in iter_records(audit_dir) if r["action"].startswith("dr.")]
    assert rows == [("dr.bundle", "started", "dana", "c0ffee"),
                    ("dr.bundle", "ok", "dana", "c0ffee"),
                    ("dr.restore", "started", "dana", "c0ffee"),
                    ("dr.restore", "ok", "dana", "c0ffee"),
                    ("dr.restore", "started", "dana", "c0ffee"),
                    ("dr.restore", "failed", "dana", "c0ffee")]
    assert verify_dir(audit_dir).ok
