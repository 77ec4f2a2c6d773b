"""REC_03: signed DR bundles into a real restic repository (Debian's restic, a local
repository here; the lab test uses an sftp one on another host), and back out from a second
checkout that holds only the inventory and the restic password."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ark_ops.fleet.dr_sign import KEY_NAME, PIN_FILE, sign_bundle, verify_signature
from ark_ops.fleet.offsite import OffsiteError, backup, fetch_newest_bundle, inventory_repository

pytestmark = [
    pytest.mark.requirement("REC_03"),
    pytest.mark.skipif(shutil.which("restic") is None,
                       reason="restic is missing: ./ops installs Debian's restic package"),
]
HOST = "ark-prod-1"


def checkout(root: Path, repo: Path) -> Path:
    inv = root / "inventory" / "prod"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text(f"all:\n  children:\n    ark:\n      hosts:\n        {HOST}:\n"
                                   "          ansible_host: 192.0.2.10\n")
    (inv / "group_vars" / "all" / "offsite.yml").write_text(
        f"ark_offsite_repository: {repo}\nark_offsite_keep_daily: 3\nark_offsite_keep_weekly: 2\n")
    return inv


def staged_bundle(staging: Path, inv: Path, payload: bytes) -> Path:
    (staging / HOST).mkdir(parents=True)
    bundle = staging / HOST / "ark-dr-20261206T080000Z.tar.gz"
    bundle.write_bytes(payload)
    sign_bundle(bundle, inv, host=HOST, signer="alice@ctl")
    return bundle


def test_bundles_go_off_host_encrypted_deduplicated_and_come_back_verified(tmp_path: Path):
    repo_dir = tmp_path / "offsite-repo"
    first = checkout(tmp_path / "first", repo_dir)
    repo = inventory_repository(first / "hosts.yml")
    marker = b"ARK-PLAINTEXT-MARKER-" * 64
    payload = marker + os.urandom(2 << 20)

    bundle = staged_bundle(tmp_path / "run1", first, payload)
    one = backup(repo, tmp_path / "run1", log=lambda *_: None)
    assert "no errors were found" in one.check
    assert one.data_added > 2 << 20 - 1
    password = (first / ".secrets" / "restic_password")
    assert oct(password.stat().st_mode & 0o777) == "0o600"
    # A second run with the same bundle adds (almost) nothing: deduplicated.
    staged_bundle(tmp_path / "run2", first, payload)
    two = backup(repo, tmp_path / "run2", log=lambda *_: None)
    assert two.data_added < one.data_added / 10
    assert two.kept == 1  # both today: keep-daily keeps the newest of the day
    # Encrypted: nothing of the bundle is readable in the repository's files.
    for f in repo_dir.rglob("*"):
        if f.is_file():
            assert marker[:32] not in f.read_bytes()

    # A second control node: the inventory (with the pinned key) and the restic password only.
    second = checkout(tmp_path / "second", repo_dir)
    (second / PIN_FILE).parent.mkdir()
    shutil.copy(first / PIN_FILE, second / PIN_FILE)
    (second / ".secrets").mkdir(mode=0o700)
    shutil.copy(password, second / ".secrets" / "restic_password")
    assert not (second / ".secrets" / KEY_NAME).exists()
    fetched = fetch_newest_bundle(inventory_repository(second), HOST, tmp_path / "restore")
    assert fetched.read_bytes() == bundle.read_bytes()
    assert verify_signature(fetched, second)["signer"] == "alice@ctl"


def test_a_wrong_password_is_refused_and_not_echoed(tmp_path: Path):
    repo_dir = tmp_path / "offsite-repo"
    first = checkout(tmp_path / "first", repo_dir)
    staged_bundle(tmp_path / "run1", first, os.urandom(4096))
    backup(inventory_repository(first / "hosts.yml"), tmp_path / "run1", log=lambda *_: None)
    (first / ".secrets" / "restic_password").write_text("wrong-password-xyz\n")
    with pytest.raises(OffsiteError) as err:
        fetch_newest_bundle(inventory_repository(first), HOST, tmp_path / "out")
    assert "wrong-password-xyz" not in str(err.value)


def test_a_bundle_backed_up_before_a_key_rotation_restores_from_an_inventory_only_checkout(
        tmp_path: Path):
    """Issue 22 §3: the off-host restore path after `secrets.rotate dr-signing-key`."""
    from ark_ops.errors import OpsError
    from ark_ops.fleet.dr_sign import SignatureRefused, rotate_signing_key, signing_key

    repo_dir = tmp_path / "offsite-repo"
    first = checkout(tmp_path / "first", repo_dir)
    repo = inventory_repository(first / "hosts.yml")
    bundle = staged_bundle(tmp_path / "run1", first, os.urandom(1 << 16))
    backup(repo, tmp_path / "run1", log=lambda *_: None)

    rotate_signing_key(first)

    second = checkout(tmp_path / "second", repo_dir)
    (second / PIN_FILE).parent.mkdir()
    shutil.copy(first / PIN_FILE, second / PIN_FILE)  # the committed pin, after the rotation
    (second / ".secrets").mkdir(mode=0o700)
    shutil.copy(first / ".secrets" / "restic_password", second / ".secrets" / "restic_password")
    fetched = fetch_newest_bundle(inventory_repository(second), HOST, tmp_path / "restore")
    assert fetched.read_bytes() == bundle.read_bytes()
    assert verify_signature(fetched, second)["signer"] == "alice@ctl"
    # A bundle signed by a key the pin does not list is refused on the same path.
    mallory = tmp_path / "mallory"
    mallory.mkdir()
    signing_key(mallory)
    sign_bundle(fetched, mallory, host=HOST, signer="mallory")
    with pytest.raises(SignatureRefused, match="another key"):
        verify_signature(fetched, second)
    # Rotating needs the signing checkout: the inventory-only one cannot.
    with pytest.raises(OpsError, match="no DR signing key"):
        rotate_signing_key(second)
