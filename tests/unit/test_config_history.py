"""GOV_02 (host side): config versions, diff with secrets masked, rollback, retention."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ark_runtime.cli import main
from ark_runtime.host.audit.chain import iter_records
from ark_runtime.host.config.history import (
    HistoryError,
    Tracked,
    diff_versions,
    load_meta,
    record_version,
    versions,
)
from ark_runtime.host.config.rollback import prune, rollback

pytestmark = pytest.mark.requirement("GOV_02")
PASSWORD = "s3cret-redis-pass-42"
POLKIT_RULE = "etc/polkit-1/rules.d/50-ark-units.rules"


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def make_venv(root: Path, name: str) -> Path:
    v = root / "opt/ark/venvs" / name
    write(v / "bin/python", "#!/bin/sh\n", 0o755)
    return v


def point_venv(root: Path, venv: Path) -> None:
    link = root / "opt/ark/venv"
    link.unlink(missing_ok=True)
    link.symlink_to(venv)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tracked:
    root = tmp_path / "root"
    for var in ("ARK_CONFIG_DIR", "ARK_CONFIG_HISTORY_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ARK_ROOT_PREFIX", str(root))
    monkeypatch.setenv("ARK_AUDIT_DIR", str(tmp_path / "audit"))
    units = root / "etc/systemd/system"
    write(units / "ark-api.service", "[Service]\nExecStart=/opt/ark/venv/bin/ark api\n")
    write(units / "ark-agent@hrm.service.d/credentials.conf", "[Service]\nEnvironmentFile=x\n")
    write(units / "ark-snapshot.timer", "[Timer]\nOnCalendar=*:0/15\n")
    (units / "ark.target.wants").mkdir(parents=True)
    (units / "ark.target.wants/ark-api.service").symlink_to(units / "ark-api.service")
    write(root / "etc/ark/HRM_RULESET.yaml", "rules:\n  max_risk: 0.02\n", 0o640)
    write(root / "etc/redis/ark.conf", f"port 6379\nrequirepass {PASSWORD}\n", 0o640)
    write(root / POLKIT_RULE, 'var user = "ark-api";\n', 0o644)
    write(root / "etc/ark/env/infrastructure.env", f"ARK_REDIS_PASSWORD={PASSWORD}\n", 0o600)
    write(root / "opt/ark/wheelhouse/runtime.lock", "a==1 --hash=sha256:" + "a" * 64 + "\n")
    point_venv(root, make_venv(root, "aaaa"))
    return Tracked.from_env()


def record(t: Tracked, **kw) -> tuple[int, bool]:
    return record_version(t, who="alice", commit="c0ffee", correlation_id="x",
                          reason="deploy", **kw)


def test_unchanged_config_records_nothing_new(host: Tracked) -> None:
    assert record(host) == (1, True)
    assert record(host) == (1, False)
    meta = load_meta(host, 1)
    assert meta["who"] == "alice" and meta["commit"] == "c0ffee"
    assert meta["venv"].endswith("opt/ark/venvs/aaaa") and len(meta["lock_sha256"]) == 64
    assert set(meta["file_sha256"]) == {
        "etc/systemd/system/ark-api.service",
        "etc/systemd/system/ark-agent@hrm.service.d/credentials.conf",
        "etc/systemd/system/ark-snapshot.timer",
        "etc/ark/HRM_RULESET.yaml", "etc/redis/ark.conf", POLKIT_RULE,
        "opt/ark/wheelhouse/runtime.lock"}
    assert list(meta["env_sha256"]) == ["infrastructure.env"]
    assert (host.history.stat().st_mode & 0o777) == 0o700


def test_no_secret_is_ever_stored_or_shown(host: Tracked) -> None:
    record(host)
    write(host.prefix / "etc/ark/HRM_RULESET.yaml", "rules:\n  max_risk: 0.05\n", 0o640)
    record(host)
    for p in host.history.rglob("*"):
        if p.is_file():
            assert PASSWORD not in p.read_text(), p
    diff = diff_versions(host, 1, 2)
    assert PASSWORD not in diff
    assert "-  max_risk: 0.02" in diff and "+  max_risk: 0.05" in diff


def test_rollback_puts_files_and_venv_back_byte_identical(host: Tracked) -> None:
    record(host)
    before = {p: p.read_bytes() for p in (host.prefix / "etc").rglob("*")
              if p.is_file() and not p.is_symlink()}
    write(host.prefix / "etc/ark/HRM_RULESET.yaml", "rules:\n  max_risk: 0.09\n", 0o640)
    write(host.prefix / "etc/systemd/system/ark-api.service", "[Service]\nNice=5\n")
    write(host.prefix / "etc/systemd/system/ark-new.service", "[Service]\n")
    write(host.prefix / "etc/systemd/system/ark-snapshot.timer", "[Timer]\nOnCalendar=hourly\n")
    write(host.prefix / "etc/redis/ark.conf", f"port 6380\nrequirepass {PASSWORD}\n", 0o640)
    # The unit-control grant goes back with the units it names (issue 21: the API's user).
    write(host.prefix / POLKIT_RULE, 'var user = "ark";\n', 0o644)
    point_venv(host.prefix, make_venv(host.prefix, "bbbb"))
    assert record(host) == (2, True)
    calls: list[tuple[str, ...]] = []
    res = rollback(host, 1, who="bob", correlation_id="y",
                   systemctl=lambda *a: calls.append(a))
    after = {p: p.read_bytes() for p in (host.prefix / "etc").rglob("*")
             if p.is_file() and not p.is_symlink()}
    assert after == before  # the password refilled from the live file, not stored
    assert res.venv_changed and os.path.realpath(host.venv_link).endswith("aaaa")
    assert res.removed == ["etc/systemd/system/ark-new.service"]
    assert ("daemon-reload",) in calls and ("restart", "redis-server.service") in calls
    assert ("restart", "ark-snapshot.timer") in calls  # not part of ark.target
    assert calls[-2:] == [("restart", "ark-heal.service"), ("restart", "ark.target")]
    assert res.new_version == 3 and load_meta(host, 3)["reason"] == "rollback to 1"
    assert load_meta(host, 3)["fingerprint"] == load_meta(host, 1)["fingerprint"]


def test_rollback_to_a_version_from_before_the_polkit_rule_keeps_it(host: Tracked) -> None:
    """A version recorded before the rule was tracked says nothing about it: rolling back
    there must not take the console's unit control away."""
    rule = host.prefix / POLKIT_RULE
    rule.unlink()
    assert record(host) == (1, True)
    write(rule, 'var user = "ark-api";\n', 0o644)
    write(host.prefix / "etc/systemd/system/ark-new.service", "[Service]\n")
    assert record(host) == (2, True)
    res = rollback(host, 1, who="bob", correlation_id="y", systemctl=lambda *a: None)
    assert res.removed == ["etc/systemd/system/ark-new.service"]
    assert rule.read_text() == 'var user = "ark-api";\n'


def test_rollback_refuses_a_damaged_version_before_writing(host: Tracked) -> None:
    record(host)
    write(host.prefix / "etc/ark/HRM_RULESET.yaml", "rules: {}\n", 0o640)
    record(host)
    copy = host.history / "1/files/etc/ark/HRM_RULESET.yaml"
    copy.write_text("tampered: true\n")
    with pytest.raises(HistoryError, match="does not match its recorded sha256"):
        rollback(host, 1, who="bob", correlation_id=None, systemctl=lambda *a: None)
    assert (host.prefix / "etc/ark/HRM_RULESET.yaml").read_text() == "rules: {}\n"


def test_rollback_refused_in_panic_state(host: Tracked) -> None:
    record(host)
    write(host.prefix / "var/lib/ark/PANIC", "panic\n")
    with pytest.raises(HistoryError, match="panic"):
        rollback(host, 1, who="b", correlation_id=None, systemctl=lambda *a: None)


def test_prune_keeps_retained_versions_venvs_and_pinned_wheels(host: Tracked) -> None:
    import hashlib

    wh = host.prefix / "opt/ark/wheelhouse"
    keep = wh / "a-1-py3-none-any.whl"
    keep.write_bytes(b"pinned wheel")
    (wh / "runtime.lock").write_text(
        f"a==1 --hash=sha256:{hashlib.sha256(b'pinned wheel').hexdigest()}\n")
    (wh / "old-0.1-py3-none-any.whl").write_bytes(b"stale")
    for name in ("v1", "v2", "v3"):
        point_venv(host.prefix, make_venv(host.prefix, name))
        record(host)
    out = prune(host, keep=2)
    assert out["versions"] == ["1"] and versions(host) == [2, 3]
    assert [Path(v).name for v in out["venvs"]] == ["aaaa", "v1"]
    assert out["wheels"] == ["old-0.1-py3-none-any.whl"] and keep.exists()
    with pytest.raises(HistoryError):
        prune(host, keep=0)


def test_cli_rollback_is_an_audit_record(host: Tracked, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    assert main(["config", "record", "--who", "alice", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
    assert main(["config", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["who"] == "alice"
    assert main(["config", "rollback", "7"]) == 65
    assert "config version 7 does not exist" in capsys.readouterr().err
    recs = [r for _f, r in iter_records(tmp_path / "audit")]
    assert [(r["action"], r["result"]) for r in recs] == [("config.rollback", "started"),
                                                          ("config.rollback", "failed")]
    with pytest.raises(SystemExit):
        main(["config", "diff", "1", "zero"])
