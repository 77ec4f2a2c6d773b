"""MEM_03 retention: which snapshots to keep (restic semantics), and pruning the rest.

The newest *verified* snapshot is always kept, so a run of corrupt newer ones can never push
the last good one out of the window.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from ark_runtime import settings
from ark_runtime.host import layout
from ark_runtime.host.atomic import fsync_dir
from ark_runtime.host.snapshot.snapshots import (
    PolicyError,
    Snapshot,
    list_snapshots,
    newest_verified,
)


@dataclass(frozen=True)
class Policy:
    keep_last: int = 10
    keep_hourly: int = 24
    keep_daily: int = 7

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Policy:
        values = {}
        for name, key in (("keep_last", "ARK_SNAPSHOT_KEEP_LAST"),
                          ("keep_hourly", "ARK_SNAPSHOT_KEEP_HOURLY"),
                          ("keep_daily", "ARK_SNAPSHOT_KEEP_DAILY")):
            try:
                values[name] = settings.get(key, env)
            except settings.SettingsError as exc:
                raise PolicyError(str(exc)) from None
            if values[name] < 0:  # the declaration bounds it too; a Policy never goes below 0
                raise PolicyError(f"{key} must be >= 0")
        return cls(**values)


def plan_prune(snaps: list[Snapshot], policy: Policy) -> dict[str, list[str]]:
    """{snapshot id: reasons to keep it} for the kept ones (restic semantics: keep-hourly N
    keeps the newest snapshot of each of the N most recent hours that have one). `snaps` is
    newest first. Never keeps nothing: the newest *verified* snapshot is always kept, which the
    caller marks before calling (reason "newest verified")."""
    keep: dict[str, list[str]] = {}
    for snap in snaps[: policy.keep_last]:
        keep.setdefault(snap.id, []).append("last")
    for label, fmt, limit in (("hourly", "%Y%m%d%H", policy.keep_hourly),
                              ("daily", "%Y%m%d", policy.keep_daily)):
        seen: set[str] = set()
        for snap in snaps:
            bucket = snap.created_at.astimezone(UTC).strftime(fmt)
            if bucket in seen:
                continue
            if len(seen) >= limit:
                break
            seen.add(bucket)
            keep.setdefault(snap.id, []).append(label)
    return keep


def prune(root: Path | None = None, policy: Policy | None = None, *, dry_run: bool = False,
          ) -> tuple[list[Snapshot], list[Snapshot]]:
    """Delete what the policy does not keep; returns (kept, removed)."""
    root = root or layout.snapshot_dir()
    policy = policy or Policy.from_env()
    snaps = list_snapshots(root)
    keep = plan_prune(snaps, policy)
    newest_ok = newest_verified(root)
    if newest_ok is not None:
        # A corrupt newest snapshot must not push the last good one out of the window.
        keep.setdefault(newest_ok.id, []).append("newest verified")
    kept = [s for s in snaps if s.id in keep]
    removed = [s for s in snaps if s.id not in keep]
    if not dry_run:
        for snap in removed:
            # Rename first so a half-deleted snapshot is never listed as a (corrupt) snapshot.
            trash = root / f".del-{snap.id}"
            os.replace(snap.path, trash)
            shutil.rmtree(trash)
        _clean_stale_temp(root)
        fsync_dir(root)
    return kept, removed


def _clean_stale_temp(root: Path, older_than: float = 3600.0) -> None:
    # Leftovers of a create or prune that crashed; an hour old cannot be one still running.
    for entry in root.glob(".*"):
        with contextlib.suppress(OSError):
            if entry.is_dir() and time.time() - entry.stat().st_mtime > older_than:
                shutil.rmtree(entry)
