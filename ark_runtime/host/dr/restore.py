"""REC_03: `ark dr restore BUNDLE` — check every member before writing anything, then stage,
restore the Redis dump (redis_dump.py), verify the snapshots, restore the newest through the
normal snapshot restore, restore logs."""

from __future__ import annotations

import hashlib
import json
import posixpath
import secrets
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ark_runtime.host.atomic import fsync_dir, fsync_file, replace
from ark_runtime.host.dr.format import MANIFEST, TOPS, BundleError, Sources
from ark_runtime.host.dr.redis_dump import REDIS_MEMBER, RedisFiles, ServiceControl, restore_dump
from ark_runtime.host.ownership import chown_tree_like


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


def _member_problem(m: tarfile.TarInfo) -> str | None:
    why = _safe_name(m.name)
    if why:
        return f"{m.name!r}: {why}"
    if m.issym() or m.islnk():
        return f"{m.name!r}: link to {m.linkname!r} (links are refused)"
    if not m.isdir() and not m.isreg():
        return f"{m.name!r}: not a regular file (type {m.type!r})"
    return None


def _scan(path: Path) -> tuple[dict[str, tuple[str, int]], bytes | None, list[str]]:
    """({member: (sha256, size)}, raw manifest, problems), reading the archive once."""
    problems: list[str] = []
    seen: dict[str, tuple[str, int]] = {}
    manifest_raw: bytes | None = None
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for m in tar:
                why = _member_problem(m)
                if why or m.isdir():
                    problems += [why] if why else []
                    continue
                if m.name in seen or (m.name == MANIFEST and manifest_raw is not None):
                    problems.append(f"{m.name!r}: appears twice")
                    continue
                fh = tar.extractfile(m)
                assert fh is not None
                if m.name == MANIFEST:
                    manifest_raw = fh.read(16 << 20)
                    continue
                seen[m.name] = (hashlib.file_digest(fh, "sha256").hexdigest(), m.size)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"{path}: not a readable bundle: {exc}") from None
    return seen, manifest_raw, problems


def _against_manifest(seen: dict[str, tuple[str, int]], manifest: dict[str, Any],
                      listed: dict[str, Any]) -> list[str]:
    problems = []
    for name, (digest, size) in sorted(seen.items()):
        meta = listed.get(name)
        if not isinstance(meta, dict):
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
    redis_entry = manifest.get("redis")
    dump = redis_entry.get("dump") if isinstance(redis_entry, dict) else None
    if dump is not None and (dump != REDIS_MEMBER or dump not in seen):
        problems.append(f"manifest Redis dump {dump!r} is not {REDIS_MEMBER!r} in the archive")
    return problems


def verify_bundle(path: Path) -> dict[str, Any]:
    """The manifest, once every member has been checked; BundleError naming the first bad
    member otherwise. Writes nothing."""
    seen, manifest_raw, problems = _scan(path)
    if manifest_raw is None:
        problems.append(f"{MANIFEST}: missing")
        raise BundleError(f"{path}: refused: " + "; ".join(problems))
    try:
        manifest = json.loads(manifest_raw)
        listed = manifest["members"]
    except (ValueError, KeyError, TypeError, RecursionError):
        listed = None
    if not isinstance(listed, dict):
        raise BundleError(f"{path}: refused: {MANIFEST} is not a bundle manifest")
    problems += _against_manifest(seen, manifest, listed)
    if problems:
        raise BundleError(f"{path}: refused, nothing written: " + "; ".join(problems))
    return manifest


@dataclass
class RestorePlan:
    manifest: dict[str, Any]
    snapshot: str | None
    logs: list[str]
    redis: str | None = None  # the Redis dump member, when the bundle has one


def _stage(path: Path, stage: Path, members: dict[str, Any]) -> None:
    with tarfile.open(path, mode="r:gz") as tar:
        for m in tar:
            if not m.isreg() or m.name == MANIFEST:
                continue
            # Names were checked by verify_bundle; re-check anyway (the file could have been
            # swapped between the two reads) and re-hash while writing.
            if _safe_name(m.name) or m.name not in members:
                raise BundleError(f"{m.name!r}: changed since verification")
            dest = stage / m.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            fh = tar.extractfile(m)
            assert fh is not None
            h = hashlib.sha256()
            with dest.open("wb") as out:
                while chunk := fh.read(1 << 20):  # hash and write in one pass
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != members[m.name]["sha256"]:
                raise BundleError(f"{m.name!r}: changed since verification")


def _install_snapshots(stage: Path, ids: list[str], src: Sources) -> list[str]:
    """Staged snapshots into the snapshot dir (unless already there), re-verified and signed
    with this host's key: their content was checked against the bundle's member hashes."""
    from ark_runtime.host.snapshot import snapshots as snap

    notes = []
    src.snapshots.mkdir(parents=True, exist_ok=True)
    for sid in ids:
        staged, target = stage / "snapshots" / sid, src.snapshots / sid
        if not staged.is_dir() or target.exists():
            continue
        problems = snap.verify_snapshot(snap.Snapshot(sid, staged), check_signature=False)
        if not problems:
            try:
                snap.resign(staged)
            except snap.SnapshotError as exc:
                problems = [str(exc)]
        if problems:
            notes.append(f"snapshot {sid} skipped: {'; '.join(problems)}")
            continue
        for f in staged.iterdir():
            fsync_file(f)
        fsync_dir(staged)
        replace(staged, target)
        chown_tree_like(target, src.state)
    return notes


def _restore_logs(stage: Path, logs: list[str], src: Sources) -> str:
    """Never overwrite a different file of the same name on this host."""
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
        chown_tree_like(target, src.log)
        restored += 1
    return (f"{restored} log file(s) restored into {src.log}"
            + (f" ({kept} renamed: a different file had the name)" if kept else ""))


def _restore_redis(stage: Path, plan: RestorePlan, src: Sources,
                   service: ServiceControl | None) -> str:
    entry = plan.manifest.get("redis")
    if plan.redis is None:
        why = entry.get("reason") if isinstance(entry, dict) else None
        return f"bundle holds no Redis dump ({why or 'made before Redis was bundled'}): " \
               "Redis untouched"
    if src.redis_conf is None:
        return ("Redis dump NOT restored: this host runs no ARK Redis (not an ark_redis "
                "host); restore the bundle on the Redis host to bring the bus back")
    assert isinstance(entry, dict)
    return restore_dump(stage / plan.redis, entry, RedisFiles.from_config(src.redis_conf),
                        service or ServiceControl.systemd())


def restore_bundle(path: Path, *, src: Sources | None = None, dry_run: bool = False,
                   redis_service: ServiceControl | None = None,
                   ) -> tuple[RestorePlan, str]:
    """Files written by root (the restore runs through sudo) are handed to the owner of the
    directory they land in, so ark can keep using and pruning them."""
    from ark_runtime.host.snapshot import restore as snapshot_restore

    src = src or Sources.from_env()
    manifest = verify_bundle(path)  # raises before anything is written
    members = manifest["members"]
    listed_ids = manifest.get("snapshots")
    ids = [i for i in listed_ids if isinstance(i, str)] if isinstance(listed_ids, list) else []
    logs = sorted(n for n in members if n.startswith("logs/"))
    redis_entry = manifest.get("redis")
    plan = RestorePlan(manifest, ids[0] if ids else None, logs,
                       redis_entry.get("dump") if isinstance(redis_entry, dict) else None)
    if dry_run:
        return plan, "dry run: nothing written"
    src.state.mkdir(parents=True, exist_ok=True)
    stage = src.state / f".dr-restore-{secrets.token_hex(4)}"
    stage.mkdir(mode=0o700)
    try:
        _stage(path, stage, members)
        # The bus first: it is the step that needs Redis stopped, and the agents are stopped.
        notes = [_restore_redis(stage, plan, src, redis_service)]
        notes += _install_snapshots(stage, ids, src)
        if plan.snapshot:
            res = snapshot_restore.restore(plan.snapshot, store=src.store, root=src.snapshots,
                               config_dir=src.config)
            notes.append(f"store restored from snapshot {res.snapshot.id} "
                         f"({res.pre_restore_note})")
        else:
            notes.append("bundle holds no snapshot: store untouched")
        notes.append(_restore_logs(stage, logs, src))
        notes.append("env files not restored: secrets are not in bundles; run the deploy")
        return plan, "; ".join(notes)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
