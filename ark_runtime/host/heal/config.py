"""heal, configuration: /etc/ark/env/<domain>.env via envcheck and the HRM ruleset; a file
that fails its check in ANY way is replaced by the last known good copy ($ARK_STATE_DIR/lkg/,
saved whenever one passes). The rejected file is kept, root-only."""

from __future__ import annotations

import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ark_runtime.host.atomic import atomic_write_bytes
from ark_runtime.host.ownership import group_id

if TYPE_CHECKING:
    from ark_runtime.host.heal.context import HealContext
    from ark_runtime.host.layout import Layout


def check_config(h: HealContext) -> None:
    for kind, path, domain in _config_files(h.layout):
        problems = config_problems(kind, path, domain)
        lkg = _lkg_path(h.layout, kind, path)
        if not problems:
            h.add("config", path, "ok", "passes its schema")
            if not h.dry_run:
                _save_lkg(h.layout, path, lkg)
            continue
        why = "; ".join(problems[:5])
        good = (lkg if lkg_trusted(h.layout) and lkg.is_file()
                and not config_problems(kind, lkg, domain) else None)
        if good is None:
            h.add("config", path, "failed",
                  f"{why}; no last known good copy to fall back to: fix it and rerun ark heal "
                  "(check with: ark env check / python -m ark_runtime.hrm check)")
            continue
        if h.fix("config", path, f"{why}; restored last known good copy from {good}",
                 problems=problems):
            _install_lkg(h.layout, kind, path, good)


def _config_files(lay: Layout) -> list[tuple[str, Path, str | None]]:
    """(kind, path, env domain) for every config file heal checks."""
    out: list[tuple[str, Path, str | None]] = [("ruleset", lay.ruleset, None)]
    env_dir = lay.config / "env"
    names = {p.name for p in env_dir.glob("*.env")} if env_dir.is_dir() else set()
    if lkg_trusted(lay):
        names |= {p.name for p in (lay.lkg / "env").glob("*.env")}
    out += [("env", env_dir / n, n.removesuffix(".env")) for n in sorted(names)]
    return out


def config_problems(kind: str, path: Path, domain: str | None) -> list[str]:
    if not path.is_file():
        return ["missing"]
    if kind == "ruleset":
        return _ruleset_problems(path)
    from ark_runtime.host.envcheck import EnvSchemaError, check_env_file, load_env_schema

    try:
        schema = load_env_schema()
    except EnvSchemaError as exc:
        return [str(exc)]
    if domain not in schema.domains:
        return [f"unknown credential domain {domain!r} (file name must be <domain>.env)"]
    # Same call as the deploy's validate step (`ark env check FILE --domain D`).
    return [str(p) for p in check_env_file(path, schema, domains=[domain])
            if p.severity == "error"]


def _ruleset_problems(path: Path) -> list[str]:
    from ark_runtime.hrm import check_ruleset_file

    try:
        return list(check_ruleset_file(path))
    # Deliberately broad: a ruleset that makes the loader raise anything at all (a TypeError
    # on `rules: [null]` before the loader learnt to refuse it) is a ruleset HRM cannot run
    # with, so heal falls back to the last known good copy instead of crashing.
    except Exception as exc:  # noqa: BLE001
        return [f"ruleset does not load ({type(exc).__name__}: {exc})"]


def _lkg_path(lay: Layout, kind: str, path: Path) -> Path:
    return lay.lkg / ("env" if kind == "env" else "") / path.name


def lkg_trusted(lay: Layout) -> bool:
    """The LKG copies are written back into /etc/ark as root. They sit under the ark-owned
    state dir, so only trust them while the lkg dir is ours and closed to others: else the
    ark user could plant a config that root installs."""
    d = lay.lkg
    try:
        for p in (d, d / "env"):
            if p.exists():
                st = p.lstat()
                if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid()
                        or stat.S_IMODE(st.st_mode) & 0o077):
                    return False
    except OSError:
        return False
    return d.is_dir()


def _save_lkg(lay: Layout, path: Path, lkg: Path) -> None:
    data = path.read_bytes()
    if lkg.is_file() and lkg.read_bytes() == data:
        return
    for d in (lay.lkg, lkg.parent):
        d.mkdir(mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)  # holds copies of secrets: root only
    atomic_write_bytes(lkg, data, mode=0o600)


def _install_lkg(lay: Layout, kind: str, path: Path, good: Path) -> None:
    # Keep the rejected file (it may be the only copy of someone's edit): root-only.
    if path.exists():
        rejected = lay.lkg / "rejected"
        rejected.mkdir(mode=0o700, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        shutil.copy2(path, rejected / f"{path.name}.{stamp}")
        os.chmod(rejected / f"{path.name}.{stamp}", 0o600)
        st = path.stat()
        mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    else:
        mode = 0o600 if kind == "env" else 0o640
        uid, gid = 0, group_id(lay.group) if kind == "ruleset" else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, good.read_bytes(), mode=0o600 if kind == "env" else mode)
    if os.geteuid() == 0:
        os.chown(path, uid, gid)
