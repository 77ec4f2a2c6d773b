"""heal, directories: the directory table's owner, group and mode; missing -> recreated,
wrong -> fixed (owner changes need root)."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from typing import TYPE_CHECKING

from ark_runtime.host.layout import DirSpec
from ark_runtime.host.ownership import owner_name, set_owner_mode

if TYPE_CHECKING:
    from ark_runtime.host.heal.context import HealContext


def check_dirs(h: HealContext) -> None:
    for spec in h.dir_table:
        _check_one(h, spec)


def _check_one(h: HealContext, spec: DirSpec) -> None:
    try:
        uid = pwd.getpwnam(spec.owner).pw_uid
        gid = grp.getgrnam(spec.group).gr_gid
    except KeyError as exc:
        h.add("dirs", spec.path, "failed",
              f"{exc.args[0]}: run the deploy (it creates the ark user and group)")
        return
    want = f"{spec.owner}:{spec.group} {spec.mode:04o}"
    if spec.path.is_symlink() or (spec.path.exists() and not spec.path.is_dir()):
        h.add("dirs", spec.path, "failed", f"not a directory (want {want}); "
              "move it away and rerun ark heal")
        return
    if not spec.path.exists():
        if h.fix("dirs", spec.path, f"missing: recreated {want}"):
            spec.path.mkdir(parents=True, mode=0o700)
            set_owner_mode(spec.path, uid, gid, spec.mode)
        return
    st = spec.path.stat()
    wrong = []
    if (st.st_uid, st.st_gid) != (uid, gid):
        wrong.append(f"owner {owner_name(st.st_uid, st.st_gid)}")
    if stat.S_IMODE(st.st_mode) != spec.mode:
        wrong.append(f"mode {stat.S_IMODE(st.st_mode):04o}")
    if not wrong:
        h.add("dirs", spec.path, "ok", want)
        return
    if (st.st_uid, st.st_gid) != (uid, gid) and os.geteuid() != 0:
        h.add("dirs", spec.path, "failed", f"{', '.join(wrong)}, want {want}: needs root to fix")
        return
    if h.fix("dirs", spec.path, f"{', '.join(wrong)} -> {want}"):
        set_owner_mode(spec.path, uid, gid, spec.mode)
