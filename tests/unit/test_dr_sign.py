"""REC_03/GOV_01: DR bundles are signed per inventory (Ed25519) and carry a verifying audit
chain and the config history; dr-restore refuses, naming why, before anything is written."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from audit_helpers import build_chain, load, store
from hypothesis import given
from hypothesis import strategies as st
from test_dr import _env, populate

from ark_ops.fleet.dr_sign import (
    KEY_NAME,
    PIN_FILE,
    PIN_FINGERPRINT,
    PIN_KEY,
    SignatureRefused,
    fingerprint,
    public_key,
    sign_bundle,
    signing_key,
    verify_bundle_chain,
    verify_signature,
)
from ark_runtime.host.dr.bundle import create_bundle

pytestmark = [pytest.mark.requirement("REC_03"), pytest.mark.requirement("GOV_01")]


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _env(monkeypatch, tmp_path / "a")
    monkeypatch.setenv("ARK_RUN_DIR", str(tmp_path / "run"))
    lay = populate(tmp_path / "a")
    build_chain(lay.log / "audit", [3, 2])
    (lay.state / "config-history/1").mkdir(parents=True)
    (lay.state / "config-history/1/meta.json").write_text('{"version": 1}\n')
    (tmp_path / "out").mkdir()
    return create_bundle(tmp_path / "out").path


@pytest.fixture
def inv(tmp_path: Path) -> Path:
    d = tmp_path / "inventory" / "prod"
    d.mkdir(parents=True)
    return d


def test_sign_then_verify(bundle: Path, inv: Path) -> None:
    sign_bundle(bundle, inv, host="web1", signer="alice@ctl")
    key = inv / ".secrets" / KEY_NAME
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE" not in bundle.with_name(bundle.name + ".sig").read_bytes()
    st = verify_signature(bundle, inv)
    assert (st["host"], st["signer"]) == ("web1", "alice@ctl")
    assert verify_bundle_chain(bundle) == "audit chain in the bundle ok (5 records)"
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert "config/history/1/meta.json" in names and "logs/audit/audit.log.1" in names
    sign_bundle(bundle, inv, host="web1", signer="x")  # the key is made once, then reused
    assert key.read_bytes() == (inv / ".secrets" / KEY_NAME).read_bytes()


def test_unsigned_bundle_is_refused(bundle: Path, inv: Path) -> None:
    with pytest.raises(SignatureRefused, match="missing: an unsigned bundle"):
        verify_signature(bundle, inv)


def test_bundle_signed_by_another_inventory_is_refused(bundle: Path, inv: Path,
                                                       tmp_path: Path) -> None:
    other = tmp_path / "inventory" / "other"
    other.mkdir()
    sign_bundle(bundle, other, host="web1", signer="mallory")
    signing_key(inv)  # this inventory has its own key
    with pytest.raises(SignatureRefused, match="another key"):
        verify_signature(bundle, inv)


def test_altered_statement_or_bundle_is_refused(bundle: Path, inv: Path) -> None:
    sig = sign_bundle(bundle, inv, host="web1", signer="alice")
    doc = json.loads(sig.read_text())
    doc["statement"]["signer"] = "bob"
    sig.write_text(json.dumps(doc))
    with pytest.raises(SignatureRefused, match="statement was altered"):
        verify_signature(bundle, inv)
    sign_bundle(bundle, inv, host="web1", signer="alice")
    with bundle.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(SignatureRefused, match="not the bundle that was signed"):
        verify_signature(bundle, inv)


def test_bundle_with_a_broken_chain_is_refused(tmp_path: Path, monkeypatch) -> None:
    _env(monkeypatch, tmp_path / "a")
    monkeypatch.setenv("ARK_RUN_DIR", str(tmp_path / "run"))
    lay = populate(tmp_path / "a")
    build_chain(lay.log / "audit", [4])
    files = load(lay.log / "audit")
    rec = json.loads(files["audit.log"][1])
    rec["who"] = "mallory"
    files["audit.log"][1] = json.dumps(rec).encode()
    store(lay.log / "audit", files)
    (tmp_path / "out").mkdir()
    b = create_bundle(tmp_path / "out").path
    with pytest.raises(SignatureRefused, match="audit chain .* broken at audit.log seq 1"):
        verify_bundle_chain(b)


def _copy_without_secrets(inv: Path, tmp_path: Path) -> Path:
    """A second control node's inventory: everything but .secrets/."""
    import shutil

    other = tmp_path / "second-checkout" / "inventory" / "prod"
    shutil.copytree(inv, other, ignore=shutil.ignore_patterns(".secrets"))
    assert not (other / ".secrets").exists()
    return other


def test_the_pinned_key_verifies_without_secrets(bundle: Path, inv: Path,
                                                 tmp_path: Path) -> None:
    sign_bundle(bundle, inv, host="web1", signer="alice")
    pin = yaml.safe_load((inv / PIN_FILE).read_text())
    pub = (inv / ".secrets" / (KEY_NAME + ".pub")).read_text()
    assert pin[PIN_KEY] == pub.strip()
    # The fingerprint is the one ssh-keygen prints, so the operator can record and compare it.
    keygen = subprocess.run(["ssh-keygen", "-lf", str(inv / ".secrets" / (KEY_NAME + ".pub"))],
                            capture_output=True, text=True, check=True).stdout.split()[1]
    assert pin[PIN_FINGERPRINT] == keygen == fingerprint(pub)
    assert "PRIVATE" not in (inv / PIN_FILE).read_text()
    second = _copy_without_secrets(inv, tmp_path)
    assert verify_signature(bundle, second)["host"] == "web1"


def test_a_pin_edited_to_another_key_is_refused(bundle: Path, inv: Path,
                                                tmp_path: Path) -> None:
    sign_bundle(bundle, inv, host="web1", signer="alice")
    second = _copy_without_secrets(inv, tmp_path)
    mallory = tmp_path / "mallory"
    mallory.mkdir()
    signing_key(mallory)
    doc = yaml.safe_load((second / PIN_FILE).read_text())
    doc[PIN_KEY] = yaml.safe_load((mallory / PIN_FILE).read_text())[PIN_KEY]
    (second / PIN_FILE).write_text(yaml.safe_dump(doc))
    with pytest.raises(SignatureRefused, match="does not match ark_dr_signing_key_fingerprint"):
        verify_signature(bundle, second)
    # Both halves swapped consistently: the bundle's signature no longer verifies.
    (second / PIN_FILE).write_text((mallory / PIN_FILE).read_text())
    with pytest.raises(SignatureRefused, match="another key"):
        verify_signature(bundle, second)


def test_no_pin_and_no_secrets_is_refused_naming_the_pin(bundle: Path, inv: Path,
                                                        tmp_path: Path) -> None:
    sign_bundle(bundle, inv, host="web1", signer="alice")
    second = _copy_without_secrets(inv, tmp_path)
    (second / PIN_FILE).unlink()
    with pytest.raises(SignatureRefused, match="no pin in .*dr_signing_key.yml"):
        verify_signature(bundle, second)


def test_a_key_made_before_the_pin_gets_pinned_on_next_use(bundle: Path, inv: Path) -> None:
    signing_key(inv)
    (inv / PIN_FILE).unlink()
    sign_bundle(bundle, inv, host="web1", signer="alice")
    assert (inv / PIN_FILE).exists()
    assert verify_signature(bundle, inv)["signer"] == "alice"


@given(st.text(max_size=200))
def test_a_malformed_pin_is_refused_with_the_field_named(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        inv = Path(d)
        (inv / PIN_FILE).parent.mkdir(parents=True)
        (inv / PIN_FILE).write_text(yaml.safe_dump({PIN_KEY: text, PIN_FINGERPRINT: "SHA256:x"}))
        with pytest.raises(SignatureRefused, match="ark_dr_signing|public key"):
            public_key(inv)


def test_the_pin_leaves_the_operators_group_vars_in_force(inv: Path) -> None:
    """A `group_vars/all/` directory makes Ansible ignore `group_vars/all.yml` (the directory
    wins): the pin once lived there and silently dropped an inventory's settings."""
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    web1: {}\n")
    (inv / "group_vars").mkdir(exist_ok=True)
    (inv / "group_vars" / "all.yml").write_text("ark_feed_marker: kept\n")
    signing_key(inv)
    assert (inv / PIN_FILE).exists()
    ansible_inventory = Path(sys.executable).parent / "ansible-inventory"
    out = subprocess.run([str(ansible_inventory), "-i", str(inv / "hosts.yml"), "--host", "web1"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out).get("ark_feed_marker") == "kept"


# --- rotation (issue 22 §3) -------------------------------------------------------------------


def _sign_copy(bundle: Path, inv: Path, name: str, signer: str) -> Path:
    import shutil

    copy = bundle.with_name(name)
    shutil.copy(bundle, copy)
    sign_bundle(copy, inv, host="web1", signer=signer)
    return copy


def test_a_bundle_signed_before_rotation_verifies_from_a_checkout_with_only_the_inventory(
        bundle: Path, inv: Path, tmp_path: Path) -> None:
    from ark_ops.fleet.dr_sign import PIN_PREVIOUS, rotate_signing_key

    before = _sign_copy(bundle, inv, "before.tar.gz", "alice")
    old_private = (inv / ".secrets" / KEY_NAME).read_bytes()
    old_fp, new_fp = rotate_signing_key(inv)
    assert old_fp != new_fp
    assert (inv / ".secrets" / KEY_NAME).read_bytes() != old_private  # the old one is gone
    assert not list((inv / ".secrets").glob("*.new*"))
    pin = yaml.safe_load((inv / PIN_FILE).read_text())
    assert pin[PIN_FINGERPRINT] == new_fp and pin[PIN_PREVIOUS][0]["fingerprint"] == old_fp
    assert "PRIVATE" not in (inv / PIN_FILE).read_text()
    after = _sign_copy(bundle, inv, "after.tar.gz", "bob")
    second = _copy_without_secrets(inv, tmp_path)  # the off-site restore path
    assert verify_signature(before, second)["signer"] == "alice"
    assert verify_signature(after, second)["signer"] == "bob"
    # Rotated twice: both earlier keys are still accepted, newest first.
    rotate_signing_key(inv)
    pin = yaml.safe_load((inv / PIN_FILE).read_text())
    assert [e["fingerprint"] for e in pin[PIN_PREVIOUS]][1] == old_fp
    assert verify_signature(before, inv)["signer"] == "alice"


def test_after_rotation_a_bundle_signed_by_an_unpinned_key_is_refused(
        bundle: Path, inv: Path, tmp_path: Path) -> None:
    from ark_ops.fleet.dr_sign import rotate_signing_key

    signing_key(inv)
    rotate_signing_key(inv)
    mallory = tmp_path / "mallory"
    mallory.mkdir()
    forged = _sign_copy(bundle, mallory, "forged.tar.gz", "mallory")
    with pytest.raises(SignatureRefused, match="another key"):
        verify_signature(forged, _copy_without_secrets(inv, tmp_path))


def test_a_previous_key_edited_in_the_pin_is_refused_naming_it(
        bundle: Path, inv: Path, tmp_path: Path) -> None:
    from ark_ops.fleet.dr_sign import PIN_PREVIOUS, rotate_signing_key

    before = _sign_copy(bundle, inv, "before.tar.gz", "alice")
    rotate_signing_key(inv)
    mallory = tmp_path / "mallory"
    mallory.mkdir()
    signing_key(mallory)
    doc = yaml.safe_load((inv / PIN_FILE).read_text())
    doc[PIN_PREVIOUS][0]["public_key"] = yaml.safe_load((mallory / PIN_FILE).read_text())[PIN_KEY]
    (inv / PIN_FILE).write_text(yaml.safe_dump(doc))
    with pytest.raises(SignatureRefused, match=r"ark_dr_signing_previous_keys\[0\] .* does not "
                                               "match its fingerprint"):
        verify_signature(before, inv)


def test_an_interrupted_key_rotation_finishes_on_rerun(bundle: Path, inv: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from ark_ops.fleet import dr_sign

    before = _sign_copy(bundle, inv, "before.tar.gz", "alice")
    real = os.replace
    monkeypatch.setattr(dr_sign.os, "replace",
                        lambda a, b: (_ for _ in ()).throw(OSError("power cut"))
                        if str(a).endswith(KEY_NAME + ".new") else real(a, b))
    with pytest.raises(OSError):
        dr_sign.rotate_signing_key(inv)  # the pin names the new key; .secrets has the old
    monkeypatch.setattr(dr_sign.os, "replace", real)
    _old, new_fp = dr_sign.rotate_signing_key(inv)
    assert yaml.safe_load((inv / PIN_FILE).read_text())[PIN_FINGERPRINT] == new_fp
    assert verify_signature(before, inv)["signer"] == "alice"
    after = _sign_copy(bundle, inv, "after.tar.gz", "bob")
    assert verify_signature(after, inv)["signer"] == "bob"


def test_rotation_needs_the_signing_checkout(inv: Path, tmp_path: Path) -> None:
    from ark_ops.errors import OpsError
    from ark_ops.fleet.dr_sign import rotate_signing_key

    signing_key(inv)
    with pytest.raises(OpsError, match="has no DR signing key .* rotate it on the control node"):
        rotate_signing_key(_copy_without_secrets(inv, tmp_path))
