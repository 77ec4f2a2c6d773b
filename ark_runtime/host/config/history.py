"""GOV_02: numbered versions of the config a deploy left on this host.

    /var/lib/ark/config-history/<N>/           root 0700, one per change
        meta.json      who, when, control repo commit, correlation id, reason, venv path,
                       runtime.lock sha256, env files' sha256 (never their values), file hashes
        files/...      the tracked files, by their path on the host: units and drop-ins,
                       HRM ruleset, Redis config (secret directives masked), logrotate config,
                       the console's polkit rule, runtime.lock

A version is recorded only when the fingerprint (file hashes, env hashes, venv) differs from
the newest one, so a deploy that changed nothing records nothing.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ark_runtime.host import layout
from ark_runtime.host.atomic import atomic_write_text, fsync_dir, replace
from ark_runtime.redact import mask_redis_secrets


class HistoryError(RuntimeError):
    """A version is missing, damaged or cannot be written; the message says which."""


@dataclass(frozen=True)
class Tracked:
    """Where the tracked files live (a prefix moves them all, for tests)."""

    prefix: Path
    config: Path
    history: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Tracked:
        lay = layout.resolve(env)
        history = layout.path_settings(env).get("ARK_CONFIG_HISTORY_DIR")
        return cls(lay.prefix, lay.config, Path(history or lay.state / "config-history"))

    def host_path(self, rel: str) -> Path:
        return self.prefix / rel

    @property
    def venv_link(self) -> Path:
        return self.prefix / "opt/ark/venv"

    @property
    def runtime_lock(self) -> Path:
        return self.prefix / "opt/ark/wheelhouse/runtime.lock"

    def files(self) -> list[str]:
        """Tracked files present now, as paths relative to the prefix."""
        units = self.prefix / "etc/systemd/system"
        found: list[Path] = []
        if units.is_dir():
            for entry in sorted(units.glob("ark*")):
                if entry.is_symlink():
                    continue  # enablement links: systemctl enable, not config
                if entry.is_file():
                    found.append(entry)
                elif entry.is_dir() and entry.name.endswith(".d"):
                    found += sorted(p for p in entry.glob("*.conf")
                                    if p.is_file() and not p.is_symlink())
        for p in (self.config / "HRM_RULESET.yaml", self.prefix / "etc/redis/ark.conf",
                  self.prefix / "etc/logrotate.d/ark", self.prefix / POLKIT_RULE,
                  self.runtime_lock):
            if p.is_file():
                found.append(p)
        return [p.relative_to(self.prefix).as_posix() for p in found]

    def env_files(self) -> list[Path]:
        return sorted((self.config / "env").glob("*.env"))


# The console's unit-control grant names the API's user and this host's units, so it rolls
# back with them. Tracked since issue 21: a version without it predates that and says nothing
# about it, so a rollback restores it when the version has it and never removes it.
POLKIT_RULE = "etc/polkit-1/rules.d/50-ark-units.rules"
UNTRACKED_BEFORE = frozenset({POLKIT_RULE})


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mask_secrets(rel: str, data: bytes) -> bytes:
    """Redis config with the password directives' values masked; other files as they are."""
    if not rel.endswith("redis/ark.conf"):
        return data
    # The password comes from the inventory; the version keeps only the mask.
    return mask_redis_secrets(data.decode("utf-8", "replace")).encode()


def current_state(t: Tracked) -> dict[str, Any]:
    """What a version would record now: file contents (masked), hashes, venv, env hashes."""
    files = {}
    for rel in t.files():
        files[rel] = mask_secrets(rel, t.host_path(rel).read_bytes())
    venv = os.path.realpath(t.venv_link) if t.venv_link.is_symlink() else None
    lock = t.runtime_lock.read_bytes() if t.runtime_lock.is_file() else b""
    return {
        "files": files,
        "file_sha256": {rel: sha256_bytes(b) for rel, b in files.items()},
        "env_sha256": {p.name: sha256_bytes(p.read_bytes()) for p in t.env_files()},
        "venv": venv,
        "lock_sha256": sha256_bytes(lock) if lock else None,
    }


def fingerprint(state: Mapping[str, Any]) -> str:
    keys = ("file_sha256", "env_sha256", "venv", "lock_sha256")
    return sha256_bytes(json.dumps({k: state[k] for k in keys}, sort_keys=True).encode())


def versions(t: Tracked) -> list[int]:
    if not t.history.is_dir():
        return []
    return sorted(int(p.name) for p in t.history.iterdir()
                  if p.name.isdigit() and (p / "meta.json").is_file())


def load_meta(t: Tracked, n: int) -> dict[str, Any]:
    path = t.history / str(n) / "meta.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        have = versions(t)
        raise HistoryError(f"config version {n} does not exist on this host (have: "
                           f"{', '.join(map(str, have[-10:])) or 'none'})") from None
    except ValueError:
        raise HistoryError(f"{path} is not valid JSON: version {n} is damaged") from None


def load_files(t: Tracked, n: int, *, check: bool = True) -> dict[str, bytes]:
    """Version n's files; with check, each must match the hash its meta recorded."""
    meta = load_meta(t, n)
    root = t.history / str(n) / "files"
    out = {}
    for rel, digest in meta["file_sha256"].items():
        try:
            data = (root / rel).read_bytes()
        except FileNotFoundError:
            raise HistoryError(f"version {n}: {rel} is missing from its copy") from None
        if check and sha256_bytes(data) != digest:
            raise HistoryError(f"version {n}: {rel} does not match its recorded sha256")
        out[rel] = data
    return out


def record_version(t: Tracked, *, who: str, commit: str | None, correlation_id: str | None,
                   reason: str, force: bool = False) -> tuple[int, bool]:
    """(version number, whether a new one was written)."""
    state = current_state(t)
    fp = fingerprint(state)
    have = versions(t)
    if have and not force and load_meta(t, have[-1]).get("fingerprint") == fp:
        return have[-1], False
    n = (have[-1] + 1) if have else 1
    t.history.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(t.history, 0o700)
    tmp = t.history / f".{n}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, data in state["files"].items():
        dest = tmp / "files" / rel
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        dest.write_bytes(data)
        os.chmod(dest, 0o600)
    meta = {
        "version": n, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "who": who, "commit": commit, "correlation_id": correlation_id, "reason": reason,
        "venv": state["venv"], "lock_sha256": state["lock_sha256"],
        "env_sha256": state["env_sha256"], "file_sha256": state["file_sha256"],
        "modes": {rel: _mode(t.host_path(rel)) for rel in state["files"]},
        "owners": {rel: _owner(t.host_path(rel)) for rel in state["files"]},
        "fingerprint": fp,
    }
    tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n",
                      mode=0o600)
    replace(tmp, t.history / str(n))
    fsync_dir(t.history)
    return n, True


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def _owner(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_uid, st.st_gid]


def version_text(t: Tracked, n: int) -> dict[str, str]:
    """Version n as named texts for a diff: each file, plus `(meta)` with what is not a file
    (env files appear only as sha256)."""
    meta = load_meta(t, n)
    texts = {rel: data.decode("utf-8", "replace") for rel, data in load_files(t, n).items()}
    lines = [f"venv: {meta['venv']}", f"runtime.lock sha256: {meta['lock_sha256']}"]
    lines += [f"env {name} sha256: {d}" for name, d in sorted(meta["env_sha256"].items())]
    texts["(meta)"] = "\n".join(lines) + "\n"
    return texts


def diff_versions(t: Tracked, a: int, b: int) -> str:
    ta, tb = version_text(t, a), version_text(t, b)
    out = []
    for rel in sorted(set(ta) | set(tb)):
        out += difflib.unified_diff(
            ta.get(rel, "").splitlines(keepends=True), tb.get(rel, "").splitlines(keepends=True),
            fromfile=f"v{a}/{rel}" if rel in ta else "/dev/null",
            tofile=f"v{b}/{rel}" if rel in tb else "/dev/null")
    return "".join(x if x.endswith("\n") else x + "\n" for x in out)
