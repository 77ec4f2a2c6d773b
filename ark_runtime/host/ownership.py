"""Who owns what root creates in ark's directories: the one ownership helper.

heal, `ark dr` and restores run as root but write into directories the ark user keeps using
(snapshots, the store, logs). Anything they create must belong to the directory's owner, or
ark cannot replace or prune it later. Unprivileged runs (tests, the ark user itself) change
nothing: their files are theirs already.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path


def chown_like(path: Path, ref: Path) -> None:
    """Give `path` the owner and group of `ref` (only as root; links are not followed)."""
    if os.geteuid() != 0 or not path.exists():
        return
    st = ref.stat()
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)


def make_dir_like_parent(path: Path) -> None:
    """`mkdir -p path`; made by root, it belongs to its parent's owner (the first snapshot
    taken by hand, or a key rotation before any, must leave ark a directory it can write)."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True)
    chown_like(path, path.parent)


def chown_tree_like(top: Path, ref: Path) -> None:
    chown_like(top, ref)
    for p in top.rglob("*"):
        chown_like(p, ref)


def set_owner_mode(path: Path, uid: int, gid: int, mode: int) -> None:
    if os.geteuid() == 0:
        os.chown(path, uid, gid)
    os.chmod(path, mode)


def owned_by_dir_owner(new: Path, old: Path, mode: int = 0o640) -> None:
    """A file that replaces `old` belongs to the owner of `old`'s directory (not to `old`'s
    owner: that file may be the damaged one)."""
    st = old.parent.stat()
    set_owner_mode(new, st.st_uid, st.st_gid, mode)


def owner_name(uid: int, gid: int) -> str:
    try:
        u = pwd.getpwuid(uid).pw_name
    except KeyError:
        u = str(uid)
    try:
        g = grp.getgrgid(gid).gr_name
    except KeyError:
        g = str(gid)
    return f"{u}:{g}"


def group_id(group: str) -> int:
    """The gid of `group`, 0 when it does not exist (yet)."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return 0
