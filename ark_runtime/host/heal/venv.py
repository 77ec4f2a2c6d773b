"""REC_02 venv check: the venv holds exactly what runtime.lock pins, byte for byte.

Every dist in the venv at the version runtime.lock pins (pip's own bootstrap dists excepted),
every pin installed, every file of each dist's RECORD present with its hash (pip checked the
wheels' hashes at install; RECORD carries them to the installed files), and no file that no
RECORD lists (a planted .pth runs code at every interpreter start). No repair: redeploy.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from importlib.metadata import Distribution, PackagePath
from pathlib import Path
from typing import TYPE_CHECKING

from ark_runtime.host.lockfile import canonical_name, parse_lock

if TYPE_CHECKING:
    from ark_runtime.host.heal.context import HealContext

# Dists that `python -m venv` bootstraps itself: allowed without a lock pin, still hash-checked.
VENV_BOOTSTRAP = {"pip", "setuptools", "wheel"}


def lock_digest(lock_text: str) -> str:
    """sha256 of runtime.lock as the deploy computes it (trailing newlines stripped: Ansible's
    file lookup); the venv dir is named by its first 12 hex digits."""
    return hashlib.sha256(lock_text.rstrip("\n").encode()).hexdigest()


def verify_venv(venv: Path, pins: Mapping[str, str]) -> tuple[list[str], int]:
    """(problems, files checked)."""
    problems: list[str] = []
    checked = 0
    site = sorted(venv.glob("lib/python3*/site-packages"))
    if not site:
        return [f"{venv}: no lib/python3*/site-packages"], 0
    installed: dict[str, str] = {}
    recorded: set[Path] = set()
    for sp in site:
        for dist_info in sorted(sp.glob("*.dist-info")):
            dist = Distribution.at(dist_info)
            name, version = dist.metadata["Name"], dist.version
            if not name or not version:
                problems.append(f"{dist_info.name}: METADATA unreadable or without Name/Version")
                continue
            key = canonical_name(name)
            installed[key] = version
            want = pins.get(key)
            if want is None and key not in VENV_BOOTSTRAP:
                problems.append(f"{name} {version} is installed but not in runtime.lock")
            elif want is not None and want != version:
                problems.append(f"{name} is {version}, runtime.lock pins {want}")
            p, n = _check_record(sp, dist, dist_info.name, recorded)
            problems += p
            checked += n
        problems += _unrecorded(sp, recorded)
    for key, version in sorted(pins.items()):
        if key not in installed:
            problems.append(f"{key}=={version} is in runtime.lock but not installed")
    return problems, checked


def _unrecorded(site: Path, recorded: set[Path]) -> list[str]:
    # A file no RECORD lists was not installed by pip from the lock: a planted .pth runs code
    # at every interpreter start, a planted module or .pyc shadows a real one.
    return [f"{Path(dirpath, name).relative_to(site)}: not installed by any dist in "
            "runtime.lock (planted?)"
            for dirpath, _dirs, files in os.walk(site) for name in files
            if Path(dirpath, name).resolve() not in recorded]


def _check_record(site: Path, dist: Distribution, label: str,
                  recorded: set[Path]) -> tuple[list[str], int]:
    files: list[PackagePath] | None = dist.files
    if files is None:
        return [f"{label}: RECORD is missing"], 0
    problems, n = [], 0
    for entry in files:
        target = (site / entry).resolve()
        recorded.add(target)
        if entry.hash is None:
            continue  # RECORD itself, and files pip compiled after install (.pyc)
        try:
            with target.open("rb") as fh:
                digest = hashlib.file_digest(fh, entry.hash.mode).digest()
        except FileNotFoundError:
            problems.append(f"{entry}: missing ({label})")
            continue
        except (OSError, ValueError) as exc:
            problems.append(f"{entry}: cannot check ({exc})")
            continue
        n += 1
        got = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if got != entry.hash.value:
            problems.append(f"{entry}: {entry.hash.mode} differs from RECORD ({label})")
    return problems, n


def check_venv(h: HealContext) -> None:
    venv, lock = h.layout.venv, h.layout.lock
    if not lock.is_file():
        h.add("venv", lock, "failed", "runtime.lock is missing: redeploy (invoke deploy)")
        return
    text = lock.read_text(encoding="utf-8")
    lock_sha = lock_digest(text)
    marker = venv / ".ark-installed"
    if not venv.is_dir():
        h.add("venv", venv, "failed", "venv is missing: redeploy (invoke deploy)")
        return
    got = marker.read_text().strip() if marker.is_file() else None
    if got != lock_sha:
        h.add("venv", marker, "failed",
              f"venv was not completely installed from this runtime.lock (marker "
              f"{got or 'missing'}, lock {lock_sha[:12]}): redeploy (invoke deploy)")
        return
    if venv.is_symlink() and venv.resolve().name != lock_sha[:12]:
        h.add("venv", venv, "failed",
              f"points at {venv.resolve().name}, lock says {lock_sha[:12]}: redeploy")
        return
    pins = parse_lock(text)
    problems, checked = verify_venv(venv, pins)
    if problems:
        h.add("venv", venv, "failed",
              "venv does not match runtime.lock (tampered or damaged): "
              + "; ".join(problems[:10]) + ("; ..." if len(problems) > 10 else "")
              + ": redeploy (invoke deploy) to reinstall from the hashed wheelhouse",
              problems=problems)
    else:
        h.add("venv", venv, "ok", f"{len(pins)} pins, {checked} files match their RECORD")
