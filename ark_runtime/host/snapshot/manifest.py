"""Snapshot manifests: their shape, and their authentication (HMAC-SHA256, per-host key).

A manifest is `{"payload": {...}, "hmac_sha256": hex}`. Reading one never raises: every way it
can be wrong (unreadable, not JSON, a field of the wrong type, a naive or out-of-range
created_at, an id that is not its directory's name, a signature that does not verify) becomes a
problem naming the field, so one bad snapshot is reported and the others keep working.

The key: 32 random bytes, hex, in <config>/snapshot.key, root:root 0600, created on first use by
root (ark heal runs first on every boot and creates it). Interval snapshots are made by the ark
user (ark-snapshot.service): that unit gets the key as a systemd credential
(LoadCredential=snapshot-key:...), which systemd (root) reads and exposes only to that unit's
processes under $CREDENTIALS_DIRECTORY. systemd passes credentials to ExecStart= only, not to
ExecStopPost=, so HRM's shutdown hook runs as root ("+" prefix) and chowns what it writes.
The key file itself stays root-only and never sits in the ark-owned state dir next to the
snapshots it signs; an unkeyed checksum recomputed after an edit, or a manifest copied from
another snapshot, no longer verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ark_runtime.host import layout

MANIFEST = "manifest.json"
DB_NAME = "memory.db"
SIGNATURE = "hmac_sha256"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_BYTES = 32


class ManifestKeyError(RuntimeError):
    """The snapshot key cannot be read or created; the message says what to do."""


# --- the key ---------------------------------------------------------------------------------


def ensure_key(path: Path) -> bytes:
    """Create the key file (0600, O_EXCL: two first users cannot write two keys) unless it
    exists, and return the key."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return _read_key(path)
    except PermissionError:
        raise ManifestKeyError(
            f"cannot create the snapshot key {path}: only root may (ark heal does it at boot); "
            "as the ark user, run through the unit that passes it (LoadCredential=snapshot-key)"
        ) from None
    try:
        os.write(fd, (secrets.token_hex(_KEY_BYTES) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except PermissionError:
        raise ManifestKeyError(
            f"cannot read the snapshot key {path}: it is root-only; run as root or through the "
            "unit that passes it (LoadCredential=snapshot-key)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestKeyError(f"cannot read the snapshot key {path}: {exc}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < _KEY_BYTES:
        raise ManifestKeyError(f"snapshot key {path} is not {_KEY_BYTES} bytes of hex: "
                               "move it away and rerun ark heal to create a new one")
    return key


def load_key(env: Mapping[str, str] | None = None, *, create: bool = False) -> bytes:
    """The systemd credential when the unit passes one, else the key file (created first when
    `create` and it does not exist yet)."""
    lay = layout.resolve(env)
    try:
        if lay.credentials is not None:
            cred = lay.credentials / layout.SNAPSHOT_KEY_CREDENTIAL
            if cred.is_file():
                return _read_key(cred)
        if create and not lay.snapshot_key.exists():
            return ensure_key(lay.snapshot_key)
        if not lay.snapshot_key.exists():
            raise ManifestKeyError(f"no snapshot key at {lay.snapshot_key}: run ark heal (as "
                                   "root) to create it")
    except PermissionError:
        # exists() raises when a directory on the way is closed to us.
        raise ManifestKeyError(
            f"cannot reach the snapshot key {lay.snapshot_key}: only root may; as the ark "
            "user, run through the unit that passes it (LoadCredential=snapshot-key)") from None
    return _read_key(lay.snapshot_key)


def canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(payload: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical(payload), hashlib.sha256).hexdigest()


def render(payload: Mapping[str, Any], key: bytes) -> str:
    return json.dumps({"payload": payload, SIGNATURE: sign(payload, key)},
                      indent=2, sort_keys=True) + "\n"


# --- reading ---------------------------------------------------------------------------------


def parse_created_at(raw: object) -> tuple[datetime | None, str | None]:
    """(UTC datetime, None) or (None, why). Naive times are refused: their order against
    aware ones is undefined (it made the newest-first sort raise)."""
    if not isinstance(raw, str):
        return None, f"payload.created_at: expected an ISO 8601 string, got {type(raw).__name__}"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None, f"payload.created_at: {raw[:40]!r} is not an ISO 8601 time"
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None, f"payload.created_at: {raw[:40]!r} has no UTC offset"
    try:
        return parsed.astimezone(UTC), None
    except (OverflowError, ValueError):
        return None, f"payload.created_at: {raw[:40]!r} is outside the representable range"


def _file_problems(files: object) -> list[str]:
    if not isinstance(files, dict):
        return [f"payload.files: expected an object, got {type(files).__name__}"]
    problems = []
    if DB_NAME not in files:
        problems.append(f"payload.files: does not list {DB_NAME}")
    for name, meta in files.items():
        field = f"payload.files[{name[:60]!r}]"
        if "/" in name or name in ("", ".", "..", MANIFEST) or "\x00" in name:
            problems.append(f"{field}: bad file name")
        elif not isinstance(meta, dict):
            problems.append(f"{field}: expected an object, got {type(meta).__name__}")
        elif not (isinstance(meta.get("sha256"), str) and _HEX64.fullmatch(meta["sha256"])):
            problems.append(f"{field}.sha256: expected 64 lowercase hex digits")
        elif type(meta.get("size")) is not int or meta["size"] < 0:
            problems.append(f"{field}.size: expected a non-negative integer")
    return problems


def payload_problems(payload: Mapping[str, Any], snapshot_id: str) -> list[str]:
    """Every field that is not what a manifest of `snapshot_id` must hold."""
    problems = []
    if payload.get("id") != snapshot_id:
        problems.append(f"payload.id: {str(payload.get('id'))[:80]!r} is not this snapshot's "
                        f"directory name {snapshot_id!r} (manifest copied from another?)")
    _, why = parse_created_at(payload.get("created_at"))
    if why:
        problems.append(why)
    for name in ("reason", "integrity_check"):
        if not isinstance(payload.get(name), str):
            problems.append(f"payload.{name}: expected a string")
    problems += _file_problems(payload.get("files"))
    return problems


@dataclass
class ManifestRead:
    payload: dict[str, Any]  # {} unless its structure is valid: callers may index it safely
    problems: list[str]


def read_manifest(snapshot_dir: Path, key: bytes | None, *, check_signature: bool = True,
                  ) -> ManifestRead:
    """Never raises. `key` None with `check_signature`: the signature cannot be checked, which
    is reported (such a snapshot is not trusted)."""
    mpath = snapshot_dir / MANIFEST
    try:
        doc = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ManifestRead({}, [f"{MANIFEST}: missing"])
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return ManifestRead({}, [f"{MANIFEST}: unreadable ({str(exc)[:200]})"])
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
        return ManifestRead({}, [f"{MANIFEST}: no payload object"])
    payload = doc["payload"]
    problems = [f"{MANIFEST}: {p}" for p in payload_problems(payload, snapshot_dir.name)]
    if check_signature:
        problems += _signature_problems(doc, payload, key)
    return ManifestRead({} if problems and _structural(problems) else payload, problems)


def _structural(problems: list[str]) -> bool:
    return any("payload." in p for p in problems)


def _signature_problems(doc: Mapping[str, Any], payload: Mapping[str, Any],
                        key: bytes | None) -> list[str]:
    got = doc.get(SIGNATURE)
    if key is None:
        return [f"{MANIFEST}: checksum cannot be checked: no snapshot key"]
    try:
        want = sign(payload, key)
    except (TypeError, ValueError, RecursionError):
        return [f"{MANIFEST}: checksum cannot be computed (payload is not plain JSON)"]
    if not isinstance(got, str) or not hmac.compare_digest(got, want):
        return [f"{MANIFEST}: checksum mismatch ({SIGNATURE} does not verify: the manifest was "
                "altered, or signed with another host's key)"]
    return []


def legacy_checksum_ok(snapshot_dir: Path) -> bool:
    """A manifest from before manifests were keyed (`sha256` of the payload) that still holds.
    Only `adopt_legacy` uses this, once, when the host key is first created."""
    try:
        doc = json.loads((snapshot_dir / MANIFEST).read_text(encoding="utf-8"))
        payload = doc["payload"]
        return (SIGNATURE not in doc and isinstance(payload, dict)
                and doc.get("sha256") == hashlib.sha256(canonical(payload)).hexdigest())
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return False
