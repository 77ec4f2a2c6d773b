"""Issue 22 §3: rotating the console operators installs the inventory's accounts only when
every operator has a new password hash (names the ones that do not), never prints a hash, and
is recorded in the host's audit chain."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ark_runtime.api.passwords import hash_password
from tests.unit.test_snapshot_manifest import _cli

pytestmark = pytest.mark.requirement("UI_02")


def _accounts(**passwords: str) -> list[dict]:
    return [{"name": n, "role": "admin" if n == "alice" else "viewer",
             "password_hash": hash_password(p)} for n, p in passwords.items()]


@pytest.fixture
def deployed(tmp_path: Path) -> tuple[Path, list[dict]]:
    dest = tmp_path / "operators.json"
    accounts = _accounts(alice="old-alice-pw", bob="old-bob-pw")
    dest.write_text(json.dumps(accounts, indent=4) + "\n")
    os.chmod(dest, 0o640)
    return dest, accounts


def _replace(tmp_path: Path, dest: Path, accounts: list[dict]) -> tuple[int, str, str]:
    new = tmp_path / "new.json"
    new.write_text(json.dumps(accounts) + "\n")
    return _cli("api", "replace-operators", str(new), "--dest", str(dest))


def test_every_operator_with_a_new_password_is_installed(deployed, tmp_path: Path) -> None:
    dest, old = deployed
    new = _accounts(alice="new-alice-pw", bob="new-bob-pw")
    code, out, err = _replace(tmp_path, dest, new)
    assert code == 0, err
    assert json.loads(dest.read_text()) == new
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    for account in old + new:
        assert account["password_hash"] not in out + err
    audit = (Path(os.environ["ARK_AUDIT_DIR"]) / "audit.log").read_text()
    assert '"api.replace-operators"' in audit
    assert all(a["password_hash"] not in audit for a in old + new)


def test_an_operator_keeping_the_deployed_password_is_named_and_nothing_changes(
        deployed, tmp_path: Path) -> None:
    dest, old = deployed
    before = dest.read_bytes()
    code, _out, err = _replace(tmp_path, dest,
                               [old[0], *_accounts(bob="new-bob-pw")])
    assert code == 65 and "alice still has the deployed password hash" in err
    assert "bob" not in err.split("still")[0]
    assert dest.read_bytes() == before


def test_no_operators_is_refused(deployed, tmp_path: Path) -> None:
    dest, _ = deployed
    code, _out, err = _replace(tmp_path, dest, [])
    assert code == 65 and "nobody could sign in" in err


def test_a_malformed_account_is_refused_naming_the_field(deployed, tmp_path: Path) -> None:
    dest, _ = deployed
    code, _out, err = _replace(tmp_path, dest, [{"name": "Eve!", "role": "admin",
                                                 "password_hash": "x"}])
    assert code == 65 and "operators[0].name" in err
