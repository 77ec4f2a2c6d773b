"""REC_03 (host side): the disaster-recovery bundle, `ark dr bundle` and `ark dr restore`.

A bundle is one gzip'd tar (stdlib has no zstd on 3.11; gzip level 1 is the fast end, see
benchmarks/dr_bundle_local.py) holding

  logs/...                  $ARK_LOG_DIR, rotated files included (audit*/governance* too)
  snapshots/<id>/...        the N newest *verified* snapshots (a fresh one is taken first)
  config/HRM_RULESET.yaml   the ruleset as deployed
  config/env/<d>.env.redacted  each env file with every sensitive value replaced by
                            "<redacted>" (and unknown variables too: not known safe = secret)
  units/...                 /etc/systemd/system/ark* unit files and drop-ins
  manifest.json             sha256 + size per member, host facts, versions, created_at

Secrets are EXCLUDED, not encrypted: a bundle travels (to the control node, to whoever
investigates, into tickets); an encrypted secret still needs a key managed everywhere the bundle
goes, and the deploy renders the env files again from the inventory's vault anyway. So nothing
in a bundle ever needs protecting beyond what logs need.

Links are never stored as tar links (a unit's enablement symlinks are recorded in the manifest
as text): the restore side then only has to accept regular files and directories.

`ark dr restore BUNDLE` reads the whole archive once and checks every member before writing
anything: relative, normalised names under the known top directories, regular files or
directories only (no links, devices, fifos), no duplicates, and every file's sha256 and size
equal to the manifest (and nothing missing or extra). Only then does it stage, verify the
snapshots, restore the newest one through the normal snapshot restore (pre-restore snapshot
of the current store included), and restore the logs. Env files are not restored.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import posixpath
import secrets
import shutil
import socket
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ark_runtime.host.atomic import fsync_dir, fsync_file, replace

MANIFEST = "manifest.json"
TOPS = ("logs", "snapshots", "config", "units")
REDACTED = "<redacted>"
DEFAULT_LEVEL = 1
DEFAULT_SNAPSHOTS = 3
EXIT_FAILED = 1
EXIT_REFUSED = 2


class BundleError(RuntimeError):
    """The bundle cannot be made, or an archive is refused; the message says why."""


@dataclass(frozen=True)
class Sources:
    log: Path
    state: Path
    snapshots: Path
    store: Path
    config: Path
    ruleset: Path
    units: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Sources:
        from ark_runtime.host.heal import Layout

        env = dict(os.environ if env is None else env)
        lay = Layout.from_env(env)
        return cls(lay.log, lay.state, lay.snapshots, lay.store, lay.config, lay.ruleset,
                   Path(env.get("ARK_UNIT_DIR") or lay.prefix / "etc/systemd/system"))


# --- bundle ----------------------------------------------------------------------------------


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
        if spec is None or spec["sensitive"]:
            hidden.append(name)
            value = REDACTED
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n", hidden


def _walk(top: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]):
            yield Path(dirpath, name)


def create_bundle(
    out: Path | None = None,
    *,
    src: Sources | None = None,
    n_snapshots: int = DEFAULT_SNAPSHOTS,
    level: int = DEFAULT_LEVEL,
    take_snapshot: bool = True,
) -> BundleResult:
    from ark_runtime import __version__
    from ark_runtime.host import snapshot as snap

    start = time.monotonic()
    src = src or Sources.from_env()
    created = datetime.now(UTC)
    host = socket.gethostname()
    out = out or src.state / "dr" / f"ark-dr-{host}-{created.strftime('%Y%m%dT%H%M%SZ')}.tar.gz"
    if out.is_dir():
        out = out / f"ark-dr-{host}-{created.strftime('%Y%m%dT%H%M%SZ')}.tar.gz"
    if out.resolve().is_relative_to(src.log.resolve()):
        raise BundleError(f"{out}: the bundle must not be written inside the log dir {src.log}")
    if not 1 <= level <= 9:
        raise BundleError("gzip level must be 1-9")
    out.parent.mkdir(parents=True, exist_ok=True)

    fresh = None
    if take_snapshot and src.store.is_file():
        # The bundle should hold the state as of now, not as of the last timer run.
        fresh = snap.create_snapshot("manual", store=src.store, root=src.snapshots,
                                     config_dir=src.config)
        from ark_runtime.host.heal import _chown_like, _chown_tree_like

        _chown_like(src.snapshots, src.state)
        _chown_tree_like(fresh.path, src.state)
    chosen = []
    for s in snap.list_snapshots(src.snapshots):
        if len(chosen) >= n_snapshots:
            break
        if not snap.verify_snapshot(s):
            chosen.append(s)

    members: dict[str, dict[str, Any]] = {}
    links: dict[str, str] = {}
    redacted: dict[str, list[str]] = {}
    tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz",
                                                     compresslevel=level) as tar:

            def add_file(path: Path, arcname: str, category: str) -> None:
                st = path.stat()
                ti = tarfile.TarInfo(arcname)
                ti.size, ti.mtime, ti.mode = st.st_size, int(st.st_mtime), 0o640
                with path.open("rb") as fh:
                    reader = _HashingReader(fh)
                    tar.addfile(ti, reader)  # type: ignore[arg-type]
                members[arcname] = {"sha256": reader.h.hexdigest(), "size": st.st_size,
                                    "category": category}

            def add_bytes(data: bytes, arcname: str, category: str) -> None:
                ti = tarfile.TarInfo(arcname)
                ti.size, ti.mtime, ti.mode = len(data), int(time.time()), 0o640
                tar.addfile(ti, io.BytesIO(data))
                members[arcname] = {"sha256": hashlib.sha256(data).hexdigest(),
                                    "size": len(data), "category": category}

            def add_tree(top: Path, prefix: str, category: str) -> None:
                if not top.is_dir():
                    return
                for path in _walk(top):
                    rel = path.relative_to(top).as_posix()
                    if path.is_symlink():
                        links[f"{prefix}/{rel}"] = os.readlink(path)
                    elif path.is_file():
                        cat = category
                        if category == "logs" and path.name.startswith(("audit", "governance")):
                            cat = "audit"
                        add_file(path, f"{prefix}/{rel}", cat)

            add_tree(src.log, "logs", "logs")
            add_tree(src.state / "config-history", "config/history", "config")  # GOV_02
            for s in chosen:
                add_tree(s.path, f"snapshots/{s.id}", "snapshot")
            if src.ruleset.is_file():
                add_file(src.ruleset, "config/HRM_RULESET.yaml", "config")
            env_dir = src.config / "env"
            if env_dir.is_dir():
                for env_file in sorted(env_dir.glob("*.env")):
                    text, hidden = redact_env(env_file.read_text(encoding="utf-8"))
                    name = f"config/env/{env_file.name}.redacted"
                    add_bytes(text.encode(), name, "config")
                    redacted[name] = hidden
            if src.units.is_dir():
                for entry in sorted(src.units.glob("ark*")):
                    if entry.is_symlink():
                        links[f"units/{entry.name}"] = os.readlink(entry)
                    elif entry.is_dir():
                        add_tree(entry, f"units/{entry.name}", "units")
                    elif entry.is_file():
                        add_file(entry, f"units/{entry.name}", "units")

            manifest = {
                "format": 1,
                "created_at": created.isoformat(),
                "host": _host_facts(),
                "runtime_version": __version__,
                "snapshots": [s.id for s in chosen],
                "fresh_snapshot": fresh.id if fresh else None,
                "members": members,
                "links": links,
                "redacted": redacted,
                "secrets": "excluded: sensitive env values are replaced by <redacted>",
                "gzip_level": level,
            }
            add_bytes(json.dumps(manifest, indent=2, sort_keys=True).encode(), MANIFEST,
                      "manifest")
            members.pop(MANIFEST)
        fsync_file(tmp)
        replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    h = hashlib.sha256()
    with out.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return BundleResult(out, out.stat().st_size, h.hexdigest(), time.monotonic() - start,
                        len(members), manifest)


# --- restore ---------------------------------------------------------------------------------


def _safe_name(name: str) -> str | None:
    """Why a member name is refused, or None."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return "absolute or malformed path"
    parts = name.split("/")
    if any(p in ("..",) for p in parts):
        return "contains '..'"
    if posixpath.normpath(name) != name.rstrip("/") or any(p in ("", ".") for p in
                                                           name.rstrip("/").split("/")):
        return "not a normalised path"
    if name != MANIFEST and parts[0] not in TOPS:
        return f"outside the bundle layout ({', '.join(TOPS)})"
    return None


def verify_bundle(path: Path) -> dict[str, Any]:
    """The manifest, once every member has been checked; BundleError naming the first bad
    member otherwise. Writes nothing."""
    problems: list[str] = []
    seen: dict[str, tuple[str, int]] = {}
    manifest_raw: bytes | None = None
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for m in tar:
                why = _safe_name(m.name)
                if why:
                    problems.append(f"{m.name!r}: {why}")
                    continue
                if m.issym() or m.islnk():
                    problems.append(f"{m.name!r}: link to {m.linkname!r} (links are refused)")
                    continue
                if m.isdir():
                    continue
                if not m.isreg():
                    problems.append(f"{m.name!r}: not a regular file (type {m.type!r})")
                    continue
                if m.name in seen or (m.name == MANIFEST and manifest_raw is not None):
                    problems.append(f"{m.name!r}: appears twice")
                    continue
                fh = tar.extractfile(m)
                assert fh is not None
                if m.name == MANIFEST:
                    manifest_raw = fh.read(16 << 20)
                    continue
                h = hashlib.sha256()
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
                seen[m.name] = (h.hexdigest(), m.size)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"{path}: not a readable bundle: {exc}") from None
    if manifest_raw is None:
        problems.append(f"{MANIFEST}: missing")
        raise BundleError(f"{path}: refused: " + "; ".join(problems))
    try:
        manifest = json.loads(manifest_raw)
        listed = manifest["members"]
        assert isinstance(listed, dict)
    except (ValueError, KeyError, AssertionError):
        raise BundleError(f"{path}: refused: {MANIFEST} is not a bundle manifest") from None
    for name, (digest, size) in sorted(seen.items()):
        meta = listed.get(name)
        if meta is None:
            problems.append(f"{name!r}: not in the manifest")
        elif meta.get("sha256") != digest or meta.get("size") != size:
            problems.append(f"{name!r}: sha256/size differ from the manifest")
    for name in sorted(set(listed) - set(seen)):
        problems.append(f"{name!r}: in the manifest but not in the archive")
    snaps = manifest.get("snapshots", [])
    for sid in snaps if isinstance(snaps, list) else [snaps]:
        # The ids become directory names on restore: one plain path component each.
        if not isinstance(sid, str) or _safe_name(f"snapshots/{sid}") or "/" in sid:
            problems.append(f"manifest snapshot id {sid!r} is not a plain name")
        elif f"snapshots/{sid}/memory.db" not in seen:
            problems.append(f"manifest snapshot {sid!r} has no memory.db in the archive")
    if problems:
        raise BundleError(f"{path}: refused, nothing written: " + "; ".join(problems))
    return manifest


@dataclass
class RestorePlan:
    manifest: dict[str, Any]
    snapshot: str | None
    logs: list[str]


def restore_bundle(path: Path, *, src: Sources | None = None, dry_run: bool = False,
                   ) -> tuple[RestorePlan, str]:
    """Files written by root (the restore runs through sudo) are handed to the owner of the
    directory they land in, so ark can keep using and pruning them."""
    from ark_runtime.host import snapshot as snap
    from ark_runtime.host.heal import _chown_tree_like

    src = src or Sources.from_env()
    manifest = verify_bundle(path)  # raises before anything is written
    members = manifest["members"]
    ids = [i for i in manifest.get("snapshots", []) if isinstance(i, str)]
    logs = sorted(n for n in members if n.startswith("logs/"))
    plan = RestorePlan(manifest, ids[0] if ids else None, logs)
    if dry_run:
        return plan, "dry run: nothing written"

    src.state.mkdir(parents=True, exist_ok=True)
    stage = src.state / f".dr-restore-{secrets.token_hex(4)}"
    stage.mkdir(mode=0o700)
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for m in tar:
                if not m.isreg() or m.name == MANIFEST:
                    continue
                # Names were checked by verify_bundle; re-check anyway (the file could have
                # been swapped between the two reads) and re-hash while writing.
                if _safe_name(m.name) or m.name not in members:
                    raise BundleError(f"{m.name!r}: changed since verification")
                dest = stage / m.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                fh = tar.extractfile(m)
                assert fh is not None
                h = hashlib.sha256()
                with dest.open("wb") as out:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                if h.hexdigest() != members[m.name]["sha256"]:
                    raise BundleError(f"{m.name!r}: changed since verification")
        notes = []
        # Snapshots: into the snapshot dir (unless already there), then verified again.
        src.snapshots.mkdir(parents=True, exist_ok=True)
        for sid in ids:
            staged = stage / "snapshots" / sid
            target = src.snapshots / sid
            if not staged.is_dir() or target.exists():
                continue
            problems = snap.verify_snapshot(snap.Snapshot(sid, staged))
            if problems:
                notes.append(f"snapshot {sid} skipped: {'; '.join(problems)}")
                continue
            for f in staged.iterdir():
                fsync_file(f)
            fsync_dir(staged)
            replace(staged, target)
            _chown_tree_like(target, src.state)
        if plan.snapshot:
            res = snap.restore(plan.snapshot, store=src.store, root=src.snapshots,
                               config_dir=src.config)
            notes.append(f"store restored from snapshot {res.snapshot.id} "
                         f"({res.pre_restore_note})")
        else:
            notes.append("bundle holds no snapshot: store untouched")
        # Logs: never overwrite a different file of the same name on this host.
        restored = kept = 0
        for name in logs:
            rel = name.removeprefix("logs/")
            staged_file, target = stage / name, src.log / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                if target.read_bytes() == staged_file.read_bytes():
                    continue
                target = target.with_name(f"{target.name}.restored-{secrets.token_hex(3)}")
                kept += 1
            shutil.move(staged_file, target)
            # Logs are not world-readable on a host (the log dir is 0750): nor are these.
            target.chmod(0o640)
            _chown_tree_like(target, src.log)
            restored += 1
        notes.append(f"{restored} log file(s) restored into {src.log}"
                     + (f" ({kept} renamed: a different file had the name)" if kept else ""))
        notes.append("env files not restored: secrets are not in bundles; run the deploy")
        return plan, "; ".join(notes)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --- `ark dr ...` ----------------------------------------------------------------------------


def _cmd_bundle(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.log_dir:
        env["ARK_LOG_DIR"] = args.log_dir
    try:
        n = args.snapshots if args.snapshots is not None else int(
            os.environ.get("ARK_DR_SNAPSHOTS", DEFAULT_SNAPSHOTS))
        res = create_bundle(Path(args.out) if args.out else None, src=Sources.from_env(env),
                            n_snapshots=n, level=args.level, take_snapshot=not args.no_snapshot)
    except (BundleError, ValueError, OSError) as exc:
        print(f"ark dr bundle: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps({"path": str(res.path), "size": res.size, "sha256": res.sha256,
                          "seconds": round(res.seconds, 3), "members": res.members,
                          "snapshots": res.manifest["snapshots"]}))
    else:
        print(f"{res.path}  {res.size} bytes  {res.members} files  "
              f"{res.seconds:.2f} s  sha256 {res.sha256}")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from ark_runtime.host.snapshot import SnapshotError

    try:
        plan, note = restore_bundle(Path(args.bundle), dry_run=args.dry_run)
    except BundleError as exc:
        print(f"ark dr restore: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (SnapshotError, OSError) as exc:
        print(f"ark dr restore: {exc}", file=sys.stderr)
        return EXIT_FAILED
    m = plan.manifest
    print(f"bundle from {m.get('host', {}).get('hostname')} at {m.get('created_at')}: "
          f"verified {len(m['members'])} files; snapshot {plan.snapshot}, "
          f"{len(plan.logs)} log files; {note}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dr = sub.add_parser("dr", help="disaster-recovery bundle (REC_03)")
    dsub = dr.add_subparsers(dest="dr_command", required=True, metavar="ACTION")
    b = dsub.add_parser("bundle", help="logs + snapshots + redacted config + units, one tar.gz")
    b.add_argument("--out", help="file or directory (default $ARK_STATE_DIR/dr/)")
    b.add_argument("--log-dir", help="logs to include (default $ARK_LOG_DIR)")
    b.add_argument("--snapshots", type=int, help="newest verified snapshots to include "
                   f"(env ARK_DR_SNAPSHOTS, default {DEFAULT_SNAPSHOTS})")
    b.add_argument("--level", type=int, default=DEFAULT_LEVEL, help="gzip level 1-9")
    b.add_argument("--no-snapshot", action="store_true", help="do not take a fresh snapshot")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_cmd_bundle)
    r = dsub.add_parser("restore", help="verify every member, then restore snapshot and logs")
    r.add_argument("bundle")
    r.add_argument("--dry-run", action="store_true", help="verify only")
    r.set_defaults(func=_cmd_restore)
