"""REC_03/GOV_01: DR bundles prove who made them — an Ed25519 signature per bundle.

The key is generated once per inventory beside its other secrets
(`inventory/<name>/.secrets/dr_signing_ed25519`, 0600; the public half in `.pub`). After a
bundle is fetched the control node signs a statement naming the bundle's sha256 (which
covers every member and the manifest inside it), size, host and time, written beside it as
`<bundle>.sig`. `dr-restore` checks, before anything is uploaded or written:

  1. the statement's signature verifies with THIS inventory's public key (a bundle signed by
     another key, or a statement edited after signing, is refused);
  2. the bundle's sha256 and size are the signed ones (a member swapped is refused);
  3. the audit chain carried in the bundle verifies (a bundle with edited history is refused).

The public key is pinned in the inventory itself (`.pins/dr_signing_key.yml`: the OpenSSH
public key and its SHA256 fingerprint, written when the key is made), so a
control node rebuilt from the inventory alone — no `.secrets/` — still verifies bundles
restored from the off-host repository. The operator records the fingerprint apart (key
escrow, LAUNCH.md): a pin whose key does not match its fingerprint is refused.

Rotation (`invoke secrets.rotate dr-signing-key`, issue 22 §3): a new key signs from then on;
the old private key is destroyed and its public half moves to the pin's
`ark_dr_signing_previous_keys` (each with its fingerprint and when it was retired), so every
bundle signed before the rotation — in reports/dr/ or the off-host repository — still
verifies from a checkout that has only the inventory. A bundle signed by a key the pin does
not list is refused.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ark_ops.errors import OpsError
from ark_runtime.host.audit.chain import verify_dir

KEY_NAME = "dr_signing_ed25519"
# Not under group_vars/: no role reads it, and a `group_vars/all/` directory would make
# Ansible ignore the operator's `group_vars/all.yml` (a directory wins over the file). A
# dot-directory is skipped when Ansible reads an inventory directory, and is kept in git.
PIN_FILE = Path(".pins") / "dr_signing_key.yml"
PIN_KEY, PIN_FINGERPRINT = "ark_dr_signing_public_key", "ark_dr_signing_key_fingerprint"
PIN_PREVIOUS = "ark_dr_signing_previous_keys"  # [{public_key, fingerprint, retired_at}]
NEW_SUFFIX = ".new"


class SignatureRefused(OpsError):
    """The bundle's signature or audit chain does not check out; nothing was written."""

    exit_code = 65  # bad data


def _secrets(inventory_dir: Path) -> Path:
    d = inventory_dir / ".secrets"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def _generate(path: Path) -> None:
    """A new key at `path` (0600, O_EXCL) and its public half at `path`.pub."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    path.with_name(path.name + ".pub").write_text(_openssh(key) + "\n")


def _openssh(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def _load_private(path: Path) -> Ed25519PrivateKey:
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise OpsError(f"{path} is not an Ed25519 key: move it away to generate a new one")
    return loaded


def signing_key(inventory_dir: Path) -> Ed25519PrivateKey:
    """This inventory's key, generated on first use (0600, never printed)."""
    path = _secrets(inventory_dir) / KEY_NAME
    if not path.exists():
        _generate(path)
    loaded = _load_private(path)
    if not (inventory_dir / PIN_FILE).exists():  # new key, or one made before the pin
        write_pin(inventory_dir, _openssh(loaded))
    return loaded


def rotate_signing_key(inventory_dir: Path) -> tuple[str, str]:
    """A new signing key; the old one's public half stays pinned as a previous key, its
    private half is destroyed. Returns (old fingerprint, new fingerprint); never a key.

    Order, so a crash at any step is finished by running it again: the new key is made as
    `<key>.new` (reused on a rerun), then the pin names it (the old key moved to previous),
    then it replaces the old private key."""
    secrets_dir = inventory_dir / ".secrets"
    path = secrets_dir / KEY_NAME
    if not path.exists():
        raise OpsError(f"this checkout has no DR signing key ({path}): rotate it on the "
                       "control node that signs the bundles (a checkout with only the "
                       "inventory verifies, it does not sign)")
    old = _load_private(path)
    new_path = secrets_dir / (KEY_NAME + NEW_SUFFIX)
    resuming = new_path.exists()
    if not resuming:
        public_key(inventory_dir)  # the pin and .secrets agree before anything changes
        _generate(new_path)
    new = _load_private(new_path)
    pinned = pinned_public_key(inventory_dir)
    if pinned is not None and key_id(pinned) not in {key_id(old.public_key()),
                                                     key_id(new.public_key())}:
        raise SignatureRefused(f"refused: {inventory_dir / PIN_FILE} pins a key that is "
                               f"neither {path} nor the rotation's new key: fix the pin first")
    old_line, new_line = _openssh(old), _openssh(new)
    previous = [e for e in previous_pins(inventory_dir)
                if e.get("fingerprint") != fingerprint(old_line)]
    previous.insert(0, {"public_key": old_line, "fingerprint": fingerprint(old_line),
                        "retired_at": datetime.now(UTC).isoformat(timespec="seconds")})
    write_pin(inventory_dir, new_line, previous)
    os.replace(new_path, path)  # the old private key is gone from here on
    os.replace(new_path.with_name(new_path.name + ".pub"), path.with_name(path.name + ".pub"))
    return fingerprint(old_line), fingerprint(new_line)


def fingerprint(openssh_line: str) -> str:
    """`SHA256:...` as `ssh-keygen -lf` prints it, of an OpenSSH public key line."""
    try:
        blob = base64.b64decode(openssh_line.split()[1], validate=True)
    except (IndexError, ValueError):
        raise SignatureRefused("refused: the pinned DR signing key is not an OpenSSH public "
                               "key line") from None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def write_pin(inventory_dir: Path, openssh_line: str,
              previous: list[dict[str, str]] | None = None) -> Path:
    """Pin the public key and its fingerprint in the inventory (public, not a secret), with
    the keys it replaced (still accepted for the bundles they signed)."""
    line = openssh_line.strip()
    target = inventory_dir / PIN_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {PIN_KEY: line, PIN_FINGERPRINT: fingerprint(line)}
    if previous:
        doc[PIN_PREVIOUS] = previous
    text = ("---\n# REC_03: the DR signing key's public half, pinned so `dr-restore` verifies "
            "bundles\n# without .secrets/. Record the fingerprint apart (LAUNCH.md, key escrow)."
            "\n" + yaml.safe_dump(doc, width=200, sort_keys=False))
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)  # a crash leaves the old pin or the new one
    return target


def _load_ed25519(line: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_ssh_public_key(line.strip())
    except (ValueError, TypeError):
        raise SignatureRefused(f"refused: {where} is not an OpenSSH public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureRefused(f"refused: {where} is not an Ed25519 public key")
    return key


def _read_pin(inventory_dir: Path) -> dict[str, Any] | None:
    path = inventory_dir / PIN_FILE
    if not path.exists():
        return None
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise SignatureRefused(f"refused: {path} does not parse as YAML") from None
    if not isinstance(doc, dict):
        raise SignatureRefused(f"refused: {path} needs {PIN_KEY} and {PIN_FINGERPRINT}")
    return doc


def _checked(line: object, recorded: object, path: Path, field: str) -> Ed25519PublicKey:
    if not isinstance(line, str) or not isinstance(recorded, str):
        raise SignatureRefused(f"refused: {path} needs {field} with its fingerprint")
    if fingerprint(line) != recorded.strip():
        against = PIN_FINGERPRINT if field == PIN_KEY else "its fingerprint"
        raise SignatureRefused(f"refused: {field} in {path} does not match {against} "
                               "(the pin was altered)")
    return _load_ed25519(line.encode(), f"{field} in {path}")


def pinned_public_key(inventory_dir: Path) -> Ed25519PublicKey | None:
    """The inventory's pinned key, checked against its fingerprint; None when not pinned."""
    doc = _read_pin(inventory_dir)
    if doc is None:
        return None
    path = inventory_dir / PIN_FILE
    return _checked(doc.get(PIN_KEY), doc.get(PIN_FINGERPRINT), path, PIN_KEY)


def previous_pins(inventory_dir: Path) -> list[dict[str, str]]:
    """The retired keys the pin still accepts, as written (each checked when used)."""
    doc = _read_pin(inventory_dir) or {}
    entries = doc.get(PIN_PREVIOUS) or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SignatureRefused(f"refused: {PIN_PREVIOUS} in {inventory_dir / PIN_FILE} must be "
                               "a list of {public_key, fingerprint, retired_at}")
    return entries


def accepted_keys(inventory_dir: Path) -> dict[str, Ed25519PublicKey]:
    """key id -> key: the current key and every previous one the pin lists."""
    current = public_key(inventory_dir)
    keys = {key_id(current): current}
    path = inventory_dir / PIN_FILE
    for i, entry in enumerate(previous_pins(inventory_dir)):
        key = _checked(entry.get("public_key"), entry.get("fingerprint"), path,
                       f"{PIN_PREVIOUS}[{i}]")
        keys.setdefault(key_id(key), key)
    return keys


def public_key(inventory_dir: Path) -> Ed25519PublicKey:
    """The key bundles must verify with: the inventory's pin, else `.secrets/`'s public half
    (inventories made before the pin). Both present and different: refused."""
    path = inventory_dir / ".secrets" / (KEY_NAME + ".pub")
    pinned = pinned_public_key(inventory_dir)
    local = _load_ed25519(path.read_bytes(), str(path)) if path.exists() else None
    if pinned and local and key_id(pinned) != key_id(local):
        raise SignatureRefused(f"refused: {path} is not the key pinned in "
                               f"{inventory_dir / PIN_FILE}: fix the pin or the key")
    if pinned or local:
        return pinned or local
    raise SignatureRefused(f"refused: this inventory has no DR signing key (no pin in "
                           f"{inventory_dir / PIN_FILE}, no {path}): pin the public key "
                           "you escrowed (LAUNCH.md)")


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _canonical(statement: dict[str, Any]) -> bytes:
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()


def sign_bundle(bundle: Path, inventory_dir: Path, *, host: str, signer: str) -> Path:
    key = signing_key(inventory_dir)
    statement = {
        "bundle": bundle.name, "sha256": _file_sha256(bundle), "size": bundle.stat().st_size,
        "host": host, "signer": signer, "key_id": key_id(key.public_key()),
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    sig = key.sign(_canonical(statement))
    out = bundle.with_name(bundle.name + ".sig")
    out.write_text(json.dumps({"statement": statement,
                               "signature": base64.b64encode(sig).decode()}, indent=2) + "\n")
    return out


def verify_signature(bundle: Path, inventory_dir: Path) -> dict[str, Any]:
    """The signed statement, or SignatureRefused naming why."""
    sig_path = bundle.with_name(bundle.name + ".sig")
    if not sig_path.is_file():
        raise SignatureRefused(f"refused: {sig_path.name} is missing: an unsigned bundle "
                               "cannot prove who made it")
    try:
        doc = json.loads(sig_path.read_text())
        statement, sig = doc["statement"], base64.b64decode(doc["signature"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise SignatureRefused(f"refused: {sig_path.name} is not a signature file") from None
    keys = accepted_keys(inventory_dir)
    named = statement.get("key_id") if isinstance(statement, dict) else None
    pub = keys.get(named) if isinstance(named, str) else None
    try:
        if pub is None:
            raise InvalidSignature
        pub.verify(sig, _canonical(statement))
    except InvalidSignature:
        why = "signed by another key" if pub is None else "the signed statement was altered"
        raise SignatureRefused(f"refused: the signature of {bundle.name} does not verify with "
                               f"this inventory's key ({why})") from None
    if statement.get("size") != bundle.stat().st_size or \
            statement.get("sha256") != _file_sha256(bundle):
        raise SignatureRefused(f"refused: {bundle.name} is not the bundle that was signed "
                               "(its sha256 differs)")
    return statement


def verify_bundle_chain(bundle: Path) -> str:
    """Verify the audit chain the bundle carries (logs/audit/...); one line saying so."""
    with tempfile.TemporaryDirectory(prefix="ark-dr-audit-") as tmp:
        found = 0
        try:
            with tarfile.open(bundle, mode="r:gz") as tar:
                for m in tar:
                    name = m.name.removeprefix("logs/audit/")
                    if m.isreg() and m.name.startswith("logs/audit/") and "/" not in name:
                        fh = tar.extractfile(m)
                        if fh is not None:
                            (Path(tmp) / name).write_bytes(fh.read())
                            found += 1
        except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
            raise SignatureRefused(f"refused: {bundle.name} does not read: {exc}") from None
        if not found:
            return "bundle holds no audit chain"
        v = verify_dir(Path(tmp))
        if not v.ok:
            raise SignatureRefused(f"refused: the audit chain in {bundle.name} is broken at "
                                   f"{v.problem}")
        return f"audit chain in the bundle ok ({v.records} records)"
