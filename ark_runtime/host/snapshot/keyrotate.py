"""Rotating the per-host snapshot key (issue 22 §3) without losing the snapshots it signed.

`ark snapshot rotate-key` (root) re-signs, under an exclusive lock, every snapshot whose
manifest verifies with the current key, then puts the new key in place. A snapshot that does
not verify with the current key (tampered, or signed by another host's key) is left as it is
and stays refused: rotation never blesses what the old key did not. The old key is gone
afterwards, so a leaked old key forges nothing new.

Crash safety: the new key is written first as `snapshot.key.new`; a rotation that stops half
way is finished by running it again (it reuses that key and skips what it already re-signed).

Snapshots made while a rotation runs: `create_snapshot` holds the same lock (shared) from
the key check to the rename, and compares its key with the id the rotation records in
`<snapshots>/.key-id` (an HMAC of a constant under the key: it names the key, never reveals
it). A process that loaded the old key before the rotation (ark-snapshot.service gets it as
a systemd credential at start) is refused with a sentence instead of writing a snapshot
nobody could verify; the next timer run gets the new key.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ark_runtime.host.atomic import (
    atomic_write_text,
    fsync_dir,
    replace,
    rewrite_keeping_owner,
)
from ark_runtime.host.ownership import make_dir_like_parent
from ark_runtime.host.snapshot import manifest as mf

KEY_ID_NAME = ".key-id"
NEW_SUFFIX = ".new"


class KeyRotationError(RuntimeError):
    """The key cannot be rotated, or a snapshot cannot be signed with a rotated-away key."""


def key_id(key: bytes) -> str:
    """Names a key without revealing it (a MAC of a constant)."""
    return hmac.new(key, b"ark snapshot key id", hashlib.sha256).hexdigest()[:16]


@contextlib.contextmanager
def key_lock(root: Path, *, exclusive: bool) -> Iterator[None]:
    """Rotation holds it exclusively; snapshot creation shared (they never wait on each
    other, only on a rotation)."""
    make_dir_like_parent(root)  # a rotation before the first snapshot: still ark's to write
    # The snapshot directory itself is the lock (flock works on a directory's descriptor):
    # no lock file to leave behind, and the ark user and root can both open it.
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def recorded_key_id(root: Path) -> str | None:
    try:
        return (root / KEY_ID_NAME).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def check_current(root: Path, key: bytes, key_file: Path) -> None:
    """Refuse a key that a rotation replaced (call under key_lock(shared)). The key file is
    the authority: when it holds `key` (heal made a new key after a loss), the id follows it."""
    recorded = recorded_key_id(root)
    if recorded is None or hmac.compare_digest(recorded, key_id(key)):
        return
    try:
        on_disk = mf._read_key(key_file)
    except mf.ManifestKeyError:
        on_disk = None
    if on_disk is not None and hmac.compare_digest(on_disk, key):
        atomic_write_text(root / KEY_ID_NAME, key_id(key) + "\n", mode=0o644)
        return
    raise KeyRotationError(
        "the snapshot key was rotated after this process loaded it (or a rotation is "
        "unfinished: run `ark snapshot rotate-key` again); the next run uses the new key")


@dataclass
class Rotation:
    resigned: list[str] = field(default_factory=list)
    already_new: list[str] = field(default_factory=list)  # a resumed rotation had done them
    refused: list[str] = field(default_factory=list)  # did not verify before: still refused
    key_id: str = ""


def rotate_key(root: Path, key_file: Path) -> Rotation:
    """New key for `key_file`; every snapshot in `root` that verified with the old one
    verifies with the new one. The key's value is never printed or returned."""
    if not key_file.is_file():
        raise KeyRotationError(f"no snapshot key at {key_file}: nothing to rotate (ark heal "
                               "creates the first one)")
    try:
        old = mf._read_key(key_file)
        new_file = key_file.with_name(key_file.name + NEW_SUFFIX)
        new = mf.ensure_key(new_file)  # reused when an earlier rotation stopped half way
    except mf.ManifestKeyError as exc:
        raise KeyRotationError(str(exc)) from None
    out = Rotation(key_id=key_id(new))
    with key_lock(root, exclusive=True):
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir() or entry.is_symlink():
                continue
            if not mf.read_manifest(entry, old).problems:
                read = mf.read_manifest(entry, None, check_signature=False)
                rewrite_keeping_owner(entry / mf.MANIFEST, mf.render(read.payload, new))
                out.resigned.append(entry.name)
            elif not mf.read_manifest(entry, new).problems:
                out.already_new.append(entry.name)
            else:
                out.refused.append(entry.name)
        # The id first: from here a process holding the old key is refused, never lets a
        # snapshot through that the new key cannot verify.
        atomic_write_text(root / KEY_ID_NAME, out.key_id + "\n", mode=0o644)
        replace(new_file, key_file)
        fsync_dir(key_file.parent)
    return out
