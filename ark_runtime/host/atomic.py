"""Crash-safe file writes: a reader (or the next boot) sees the old file or the new one, never
a torn mix.

The recipe is the POSIX one: write a temp file in the *same directory* (rename is only atomic
within a filesystem), fsync it (so the data is on disk before the name points at it), rename
over the target, then fsync the directory (so the rename itself survives a power cut).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "fsync_dir", "fsync_file", "replace",
           "rewrite_keeping_owner"]


def fsync_dir(path: str | Path) -> None:
    """Persist a directory's entries (creations, renames, unlinks) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(src: str | Path, dst: str | Path) -> None:
    """rename(2) src over dst and persist the rename (both parents, if they differ)."""
    src, dst = Path(src), Path(dst)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if src.parent.resolve() != dst.parent.resolve():
        fsync_dir(src.parent)


def atomic_write_bytes(path: str | Path, data: bytes, *, mode: int = 0o644) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        replace(tmp, path)
    except BaseException:
        # The target is untouched; do not leave the half-written temp file behind either.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str, *, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def rewrite_keeping_owner(path: str | Path, text: str,
                          check: Callable[[Path], None] | None = None) -> None:
    """Replace an existing file atomically with `text`, keeping its mode and (as root) its
    owner: root rewriting a file ark or the API reads. `check(temp file)` may raise to refuse
    the new content; the target is then untouched."""
    path = Path(path)
    st = path.stat()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, st.st_mode & 0o7777)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        if check is not None:
            check(Path(tmp))
        replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
