"""The host's ARK state on disk: panic flag, last heal, newest verified snapshot; and, on
the host holding HRM's store, the decisions by verdict (a separate source, so a store that
cannot be read leaves the rest reported). The breakers come from Redis (metrics/bus.py)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ark_runtime.host import layout
from ark_runtime.host.snapshot.snapshots import list_snapshots, verify_snapshot
from ark_runtime.metrics.base import Source


def last_heal(path: Path, tail_bytes: int = 65536) -> tuple[float, bool] | None:
    """(time, safe) of the newest `heal_result` line in heal.log, reading only its tail."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - tail_bytes))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for text in reversed(lines):
        try:
            rec = json.loads(text)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("event") == "heal_result" and not rec.get("dry_run"):
            try:
                when = datetime.fromisoformat(str(rec.get("ts"))).timestamp()
            except ValueError:
                when = float("nan")
            return when, bool(rec.get("safe"))
    return None


class SnapshotAge:
    """Age of the newest snapshot that verifies. Verifying hashes the store copy, so each
    snapshot is verified once and the verdict kept (snapshots are immutable once listed)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.verdicts: dict[str, bool] = {}

    def newest_verified(self) -> tuple[str, float] | None:
        snaps = list_snapshots(self.root)
        self.verdicts = {s.id: self.verdicts[s.id] for s in snaps if s.id in self.verdicts}
        for snap in snaps:
            if snap.id not in self.verdicts:
                self.verdicts[snap.id] = not verify_snapshot(snap)
            if self.verdicts[snap.id]:
                return snap.id, snap.created_at.timestamp()
        return None


def read_store(db: Path) -> dict[str, int]:
    """Decisions by verdict from HRM's store, opened read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
    try:
        rows = conn.execute("SELECT approved, COUNT(*) FROM decisions GROUP BY approved")
        return {("approved" if a else "rejected"): n for a, n in rows}
    finally:
        conn.close()


class StateSource(Source):
    name = "state"

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.snapshots = SnapshotAge(layout.snapshot_dir(self.env))

    def metrics(self) -> Iterable[Metric]:
        panic = GaugeMetricFamily("ark_panic", "1 while the host's panic flag is set")
        panic.add_metric([], 1.0 if layout.panic_flag(self.env).exists() else 0.0)
        yield panic
        heal = last_heal(layout.log_dir(self.env) / "heal.log")
        if heal:
            ok = GaugeMetricFamily("ark_heal_last_safe", "1 when the last `ark heal` found the "
                                   "host safe to start")
            ok.add_metric([], 1.0 if heal[1] else 0.0)
            when = GaugeMetricFamily("ark_heal_last_timestamp_seconds", "When `ark heal` last ran")
            when.add_metric([], heal[0])
            yield from (ok, when)
        newest = self.snapshots.newest_verified()
        if newest:
            age = GaugeMetricFamily("ark_snapshot_newest_verified_age_seconds",
                                    "Age of the newest snapshot that verifies",
                                    labels=["snapshot"])
            age.add_metric([newest[0]], max(0.0, time.time() - newest[1]))
            yield age


class StoreSource(Source):
    """Decisions by verdict, on the host holding HRM's store (nothing elsewhere)."""

    name = "store"

    def __init__(self, env: Mapping[str, str]) -> None:
        self.db = layout.store_path(env)

    def metrics(self) -> Iterable[Metric]:
        if self.db.is_file():
            yield from store_metrics(self.db)


def store_metrics(db: Path) -> Iterable[Metric]:
    verdicts = read_store(db)
    decisions = CounterMetricFamily("ark_decisions", "HRM decisions by verdict",
                                    labels=["verdict"])
    for verdict in ("approved", "rejected"):
        decisions.add_metric([verdict], float(verdicts.get(verdict, 0)))
    yield decisions
