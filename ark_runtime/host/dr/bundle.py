"""REC_03: `ark dr bundle` — logs, newest verified snapshots, redacted config and units in one
gzip'd tar with a manifest of every member's sha256 and size (format.py: the layout)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import secrets
import socket
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ark_runtime.host.atomic import fsync_file, replace
from ark_runtime.host.dr.format import (
    DEFAULT_LEVEL,
    DEFAULT_SNAPSHOTS,
    MANIFEST,
    BundleUsageError,
    Sources,
)
from ark_runtime.host.dr.redis_dump import REDIS_MEMBER, RedisFiles, dump_into
from ark_runtime.host.ownership import chown_like, chown_tree_like
from ark_runtime.redact import MASK, is_secret_variable


class _HashingReader:
    """Feeds tarfile while hashing exactly the bytes that go into the archive (a log still
    being appended to is archived, and hashed, up to the size tarfile recorded)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.h = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.h.update(data)
        return data


@dataclass
class BundleResult:
    path: Path
    size: int
    sha256: str
    seconds: float
    members: int
    manifest: dict[str, Any] = field(default_factory=dict)


def _host_facts() -> dict[str, Any]:
    osr: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep:
                osr[k] = v.strip().strip('"')
    return {
        "hostname": socket.gethostname(),
        "os_release": {k: osr[k] for k in ("ID", "VERSION_ID", "PRETTY_NAME") if k in osr},
        "kernel": platform.release(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def redact_env(text: str) -> tuple[str, list[str]]:
    """The env file with sensitive (or undeclared) values replaced; returns (text, names
    redacted). Lines that do not parse are dropped: they might be a secret on its own."""
    from ark_runtime.host.envcheck import load_env_schema, parse_env_file

    schema = load_env_schema()
    values, _ = parse_env_file(text)
    lines = ["# redacted copy made by `ark dr bundle`: sensitive values are not in bundles"]
    hidden = []
    for name, (value, _line) in values.items():
        spec = schema.spec_for(name)
        # Not known safe = secret: a declared sensitive variable and any undeclared one.
        declared = () if spec is None else (name,)
        if (spec and spec["sensitive"]) or is_secret_variable(name, declared,
                                                               unknown_is_secret=True):
            hidden.append(name)
            value = MASK
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n", hidden


def _walk(top: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]):
            yield Path(dirpath, name)


class _BundleWriter:
    """Adds members to an open tar and records each one's sha256, size and category; links
    are recorded as text, never archived."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members: dict[str, dict[str, Any]] = {}
        self.links: dict[str, str] = {}
        self.redacted: dict[str, list[str]] = {}

    def add_file(self, path: Path, arcname: str, category: str) -> None:
        st = path.stat()
        ti = tarfile.TarInfo(arcname)
        ti.size, ti.mtime, ti.mode = st.st_size, int(st.st_mtime), 0o640
        with path.open("rb") as fh:
            reader = _HashingReader(fh)
            self.tar.addfile(ti, reader)  # type: ignore[arg-type]
        self.members[arcname] = {"sha256": reader.h.hexdigest(), "size": st.st_size,
                                 "category": category}

    def add_bytes(self, data: bytes, arcname: str, category: str) -> None:
        ti = tarfile.TarInfo(arcname)
        ti.size, ti.mtime, ti.mode = len(data), int(time.time()), 0o640
        self.tar.addfile(ti, io.BytesIO(data))
        self.members[arcname] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                 "category": category}

    def add_tree(self, top: Path, prefix: str, category: str) -> None:
        if not top.is_dir():
            return
        for path in _walk(top):
            rel = path.relative_to(top).as_posix()
            if path.is_symlink():
                self.links[f"{prefix}/{rel}"] = os.readlink(path)
            elif path.is_file():
                cat = category
                if category == "logs" and path.name.startswith(("audit", "governance")):
                    cat = "audit"
                self.add_file(path, f"{prefix}/{rel}", cat)

    def add_config(self, src: Sources) -> None:
        if src.ruleset.is_file():
            self.add_file(src.ruleset, "config/HRM_RULESET.yaml", "config")
        env_dir = src.config / "env"
        if env_dir.is_dir():
            for env_file in sorted(env_dir.glob("*.env")):
                text, hidden = redact_env(env_file.read_text(encoding="utf-8"))
                name = f"config/env/{env_file.name}.redacted"
                self.add_bytes(text.encode(), name, "config")
                self.redacted[name] = hidden

    def add_units(self, units: Path) -> None:
        if not units.is_dir():
            return
        for entry in sorted(units.glob("ark*")):
            if entry.is_symlink():
                self.links[f"units/{entry.name}"] = os.readlink(entry)
            elif entry.is_dir():
                self.add_tree(entry, f"units/{entry.name}", "units")
            elif entry.is_file():
                self.add_file(entry, f"units/{entry.name}", "units")


def _output_path(out: Path | None, src: Sources, created: datetime, level: int) -> Path:
    name = f"ark-dr-{socket.gethostname()}-{created.strftime('%Y%m%dT%H%M%SZ')}.tar.gz"
    out = out or src.state / "dr" / name
    if out.is_dir():
        out = out / name
    if out.resolve().is_relative_to(src.log.resolve()):
        raise BundleUsageError(
            f"{out}: the bundle must not be written inside the log dir {src.log}")
    if not 1 <= level <= 9:
        raise BundleUsageError("gzip level must be 1-9")
    return out


def _snapshots_to_ship(src: Sources, n_snapshots: int, take_snapshot: bool) -> tuple[Any, list]:
    """(the fresh snapshot or None, the newest verified snapshots to include)."""
    from ark_runtime.host.snapshot import snapshots as snap

    fresh = None
    if take_snapshot and src.store.is_file():
        # The bundle should hold the state as of now, not as of the last timer run.
        fresh = snap.create_snapshot("manual", store=src.store, root=src.snapshots,
                                     config_dir=src.config)
        chown_like(src.snapshots, src.state)
        chown_tree_like(fresh.path, src.state)
    chosen = []
    for s in snap.list_snapshots(src.snapshots):
        if len(chosen) >= n_snapshots:
            break
        if not snap.verify_snapshot(s):
            chosen.append(s)
    return fresh, chosen


def _redis_dump(src: Sources, work: Path) -> tuple[Path | None, dict[str, Any]]:
    """(the RDB to ship or None, the manifest's `redis` entry)."""
    if src.redis_conf is None:
        return None, {"dump": None, "reason": "not a Redis host (no ARK Redis config here): "
                      "the bundle of the ark_redis host carries the bus"}
    dump = work / "dump.rdb"
    return dump, dump_into(RedisFiles.from_config(src.redis_conf), dump)


def _write_archive(tmp: Path, level: int, src: Sources, chosen: list, fresh: Any,
                   dump: Path | None, redis_entry: dict[str, Any], created: datetime,
                   ) -> tuple[dict[str, Any], int]:
    """The archive at `tmp`, fsynced; (its manifest, its member count). Removed on failure."""
    from ark_runtime import __version__

    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz",
                                                     compresslevel=level) as tar:
            w = _BundleWriter(tar)
            if dump is not None:
                w.add_file(dump, REDIS_MEMBER, "redis")
            w.add_tree(src.log, "logs", "logs")
            w.add_tree(src.state / "config-history", "config/history", "config")  # GOV_02
            for s in chosen:
                w.add_tree(s.path, f"snapshots/{s.id}", "snapshot")
            w.add_config(src)
            w.add_units(src.units)
            manifest = {
                "format": 1,
                "created_at": created.isoformat(),
                "host": _host_facts(),
                "runtime_version": __version__,
                "snapshots": [s.id for s in chosen],
                "fresh_snapshot": fresh.id if fresh else None,
                "redis": redis_entry,
                "members": w.members,
                "links": w.links,
                "redacted": w.redacted,
                "secrets": f"excluded: sensitive env values are replaced by {MASK}",
                "gzip_level": level,
            }
            w.add_bytes(json.dumps(manifest, indent=2, sort_keys=True).encode(), MANIFEST,
                        "manifest")
            w.members.pop(MANIFEST)
        fsync_file(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return manifest, len(w.members)


def create_bundle(
    out: Path | None = None,
    *,
    src: Sources | None = None,
    n_snapshots: int = DEFAULT_SNAPSHOTS,
    level: int = DEFAULT_LEVEL,
    take_snapshot: bool = True,
) -> BundleResult:

    start = time.monotonic()
    src = src or Sources.from_env()
    created = datetime.now(UTC)
    out = _output_path(out, src, created, level)
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh, chosen = _snapshots_to_ship(src, n_snapshots, take_snapshot)
    tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    with tempfile.TemporaryDirectory(prefix=".redis-", dir=out.parent) as work:
        # Issue #19 §5: the bus as of now, beside the store as of now.
        dump, redis_entry = _redis_dump(src, Path(work))
        manifest, members = _write_archive(tmp, level, src, chosen, fresh, dump, redis_entry,
                                           created)
    try:
        replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with out.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return BundleResult(out, out.stat().st_size, digest, time.monotonic() - start,
                        members, manifest)
