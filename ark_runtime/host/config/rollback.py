"""GOV_02: put a recorded config version back, and prune old versions, venvs and wheels.

Rollback to N: every tracked file of N is checked against its recorded hash first (nothing is
written when one does not match), then files that differ are written back atomically with
their recorded modes, files N did not have are removed, the Redis password directives are
refilled from the live file (versions never hold them), /opt/ark/venv is pointed at N's venv
(kept by retention) with N's runtime.lock, systemd reloads, and what changed restarts through
the cold-start checks (ark-heal, then ark.target). The result is recorded as a new version.
Env files are not rolled back (a version has only their hashes): a difference is reported.

Retention (DEFAULT_KEEP = 20): a version is a few dozen KB, and ARK deploys a handful of times
a week, so 20 versions cover about a month of rollback targets; what costs disk is a venv
(~60 MB), and only venvs of retained versions are kept, usually two or three distinct ones.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ark_runtime.host.atomic import atomic_write_bytes, fsync_dir
from ark_runtime.host.config.history import (
    UNTRACKED_BEFORE,
    HistoryError,
    Tracked,
    current_state,
    load_files,
    load_meta,
    record_version,
    sha256_bytes,
    versions,
)
from ark_runtime.redact import MASKED_REDIS_DIRECTIVE, has_mask

DEFAULT_KEEP = 20
_REDIS_LINE = re.compile(r"^\s*(requirepass|masterauth)\s+(\S+)", re.MULTILINE)


@dataclass
class RollbackResult:
    target: int
    new_version: int
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    venv_changed: bool = False
    restarted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _unmask_redis(old: bytes, live: bytes) -> bytes:
    """Version text with each masked directive's value taken from the live file."""
    values = dict(_REDIS_LINE.findall(live.decode("utf-8", "replace")))
    text = old.decode("utf-8", "replace")

    def fill(m: re.Match[str]) -> str:
        if m[1] not in values:
            raise HistoryError(f"cannot restore the Redis config: the live file has no "
                               f"{m[1]} to refill (re-deploy instead)")
        return f"{m[1]} {values[m[1]]}"

    return MASKED_REDIS_DIRECTIVE.sub(fill, text).encode()


def _systemctl(*args: str) -> None:
    proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise HistoryError(f"systemctl {' '.join(args)} failed: "
                           f"{(proc.stderr or proc.stdout).strip()[-300:]}")


def _switch_venv(t: Tracked, venv: str) -> None:
    if not Path(venv, "bin", "python").exists():
        raise HistoryError(f"the venv of that version ({venv}) is gone: re-deploy that commit")
    tmp = t.venv_link.with_name(".venv.rollback")
    tmp.unlink(missing_ok=True)
    os.symlink(venv, tmp)
    os.replace(tmp, t.venv_link)
    fsync_dir(t.venv_link.parent)


def plan_files(t: Tracked, n: int) -> tuple[dict[str, bytes], list[str]]:
    """(files to write, files to remove) to make the host match version n."""
    want = load_files(t, n)  # raises before anything is written when a copy is damaged
    now = current_state(t)["files"]
    live_redis = t.host_path("etc/redis/ark.conf")
    write = {}
    for rel, data in want.items():
        if now.get(rel) != data:
            if has_mask(data) and live_redis.is_file():
                data = _unmask_redis(data, live_redis.read_bytes())
            if has_mask(data):
                raise HistoryError(f"cannot restore {rel}: it holds a masked secret this host "
                                   "cannot refill (re-deploy that commit instead)")
            write[rel] = data
    remove = sorted(set(now) - set(want) - UNTRACKED_BEFORE)
    return write, remove


def rollback(t: Tracked, n: int, *, who: str, correlation_id: str | None,
             systemctl: Callable[..., None] = _systemctl) -> RollbackResult:
    meta = load_meta(t, n)
    if (t.prefix / "var/lib/ark/PANIC").exists():
        raise HistoryError("the host is in panic state: run `invoke recover` first")
    write, remove = plan_files(t, n)
    state = current_state(t)
    res = RollbackResult(n, 0)
    venv = meta.get("venv")
    res.venv_changed = bool(venv) and venv != state["venv"]
    if res.venv_changed:
        _switch_venv(t, venv)
    modes = meta.get("modes", {})
    for rel, data in sorted(write.items()):
        dest = t.host_path(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest, data, mode=modes.get(rel, 0o644))
        owner = meta.get("owners", {}).get(rel)
        if owner and os.geteuid() == 0:
            os.chown(dest, owner[0], owner[1])  # the ruleset is root:ark: ARK must read it
        res.changed.append(rel)
    for rel in remove:
        t.host_path(rel).unlink(missing_ok=True)
        res.removed.append(rel)
    if meta["env_sha256"] != state["env_sha256"]:
        res.notes.append("env files differ from that version and were left as they are "
                         "(a version holds only their hashes): re-deploy to render them")
    touched = res.changed + res.removed
    if any(r.startswith("etc/systemd/") for r in touched):
        systemctl("daemon-reload")
    if any(r.endswith("redis/ark.conf") for r in touched):
        systemctl("restart", "redis-server.service")
        res.restarted.append("redis-server.service")
    ark_reads = [r for r in touched if not r.startswith("etc/logrotate.d/")
                 and not r.endswith("redis/ark.conf")]
    for timer in sorted({Path(r).name for r in res.changed if r.endswith(".timer")}):
        systemctl("restart", timer)  # a timer is not part of ark.target: its schedule changed
        res.restarted.append(timer)
    if ark_reads or res.venv_changed:
        # Through the cold-start checks, as dr restore does: heal first, then the target.
        systemctl("restart", "ark-heal.service")
        systemctl("restart", "ark.target")
        res.restarted += ["ark-heal.service", "ark.target"]
    res.new_version, _ = record_version(t, who=who, commit=meta.get("commit"),
                                        correlation_id=correlation_id,
                                        reason=f"rollback to {n}", force=True)
    return res


def _lock_hashes(lock: Path) -> set[str]:
    if not lock.is_file():
        return set()
    return set(re.findall(r"--hash=sha256:([0-9a-f]{64})", lock.read_text()))


def prune(t: Tracked, keep: int = DEFAULT_KEEP) -> dict[str, list[str]]:
    """Drop versions beyond the newest `keep`, venvs no retained version (nor the current
    link) uses, and wheels the current runtime.lock does not pin."""
    if keep < 1:
        raise HistoryError("keep must be at least 1: the current version is always kept")
    have = versions(t)
    gone = [str(n) for n in have[:-keep]]
    for n in gone:
        shutil.rmtree(t.history / n)
    kept_venvs = {load_meta(t, n).get("venv") for n in have[-keep:]}
    if t.venv_link.is_symlink():
        kept_venvs.add(os.path.realpath(t.venv_link))
    venvs_dir = t.prefix / "opt/ark/venvs"
    stale_venvs = []
    if venvs_dir.is_dir():
        for v in sorted(venvs_dir.iterdir()):
            if v.is_dir() and str(v) not in kept_venvs and os.path.realpath(v) not in kept_venvs:
                shutil.rmtree(v)
                stale_venvs.append(str(v))
    pinned = _lock_hashes(t.runtime_lock)
    stale_wheels = []
    if pinned:
        for whl in sorted(t.runtime_lock.parent.glob("*.whl")):
            if sha256_bytes(whl.read_bytes()) not in pinned:
                whl.unlink()
                stale_wheels.append(whl.name)
    return {"versions": gone, "venvs": stale_venvs, "wheels": stale_wheels}
