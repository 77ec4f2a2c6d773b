"""memory.db over time (MEM_01, AGENT_04): a schema version with forward migrations, and
retention per table with an incremental vacuum, so the store stays bounded and upgradable.

Schema version: SQLite's `PRAGMA user_version`. Stores written before versions existed read
0 and are schema 1 (the tables MEMORY_SPEC.yaml declares). Opening a store runs every
migration past its version, each in its own transaction with the version bump, so a crash
mid-way leaves a store at a known version; a store from a newer release is refused (its
reader would misread it). `ark heal` reports an older version as "older schema, HRM migrates
it on start", never as corruption.

Retention (what may go, and what must stay for audit):
  processed_messages  idempotency marks: needed only while a message can still come back,
                      i.e. longer than the bus's dedup TTL (ARK_BUS_DEDUP_TTL_S, 7 days)
                      and any redelivery; default 14 days.
  decisions           HRM's verdicts are the audit record of what was approved and why:
                      default 400 days (a year and a margin; SEC_03 keeps audit 52 weeks).
                      A decision whose position is still open is never pruned.
  ledger              closed (and expired) positions, their P&L: the same audit horizon,
                      400 days. Open positions are never pruned (they are live exposure).
  objects             payloads (plans) no kept decision or ledger entry refers to, after
                      14 days. `state` (breakers, trips) is never pruned.
Pruning deletes in chunks (a bounded write lock each), then gives the free pages back with
`PRAGMA incremental_vacuum` (the store uses auto_vacuum=INCREMENTAL from schema 2 on).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["SCHEMA_VERSION", "Retention", "SchemaTooNew", "migrate", "prune", "schema_version"]

SCHEMA_VERSION = 2


class SchemaTooNew(sqlite3.DatabaseError):
    """The store was written by a newer release."""


def _v2(db: sqlite3.Connection) -> None:
    # Indexes for the queries that grow with the store: open exposure (ledger by status),
    # and the retention sweeps by age.
    db.execute("CREATE INDEX IF NOT EXISTS ledger_status ON ledger (status, symbol)")
    db.execute("CREATE INDEX IF NOT EXISTS decisions_decided_at ON decisions (decided_at)")
    db.execute("CREATE INDEX IF NOT EXISTS processed_at ON processed_messages (processed_at)")
    db.execute("CREATE INDEX IF NOT EXISTS objects_created ON objects (created_at)")
    # The objects sweep asks, per payload, whether a decision or a position still refers to
    # it: without these, each sweep would scan both tables once per payload.
    db.execute("CREATE INDEX IF NOT EXISTS decisions_plan ON decisions (plan_hash)")
    db.execute("CREATE INDEX IF NOT EXISTS ledger_plan ON ledger (plan_hash)")


# version -> the step that takes a store from version-1 to version. Forward only.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _v2}


def schema_version(db: sqlite3.Connection) -> int:
    """The store's schema version (a store from before versions existed is 1)."""
    return max(1, int(db.execute("PRAGMA user_version").fetchone()[0]))


def migrate(db: sqlite3.Connection) -> int:
    """Bring the store (an autocommit connection, tables already created) to SCHEMA_VERSION.
    Returns the version it was at."""
    found = schema_version(db)
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(f"store schema v{found} was written by a newer ARK release; this "
                           f"one reads up to v{SCHEMA_VERSION} (upgrade ARK, or restore a "
                           "snapshot taken by this release)")
    for version in range(found + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        # An older store: auto_vacuum changes only with a full VACUUM (once, here).
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("VACUUM")
    return found


@dataclass(frozen=True)
class Retention:
    """Days each table keeps (see the module docstring for what audit needs)."""

    processed_days: float = 14
    decisions_days: float = 400
    ledger_days: float = 400
    objects_days: float = 14
    chunk: int = 5000  # rows per delete: each one a short write lock


def prune(db: sqlite3.Connection, retention: Retention, now: datetime,
          vacuum_pages: int = 2000) -> dict[str, int]:
    """Delete what retention lets go as of `now` (timezone-aware; the stored times are UTC
    ISO 8601, which sort as text). Returns rows deleted per table."""

    def cutoff(days: float, since: datetime = now) -> str:
        return (since - timedelta(days=days)).isoformat()

    # A position's times are market time (the bars'): a replayed or historical feed closes
    # positions years before the wall clock, so the ledger ages from its newest close, never
    # from a moment later than now.
    newest = db.execute("SELECT MAX(closed_at) FROM ledger WHERE status = 'closed'").fetchone()[0]
    ledger_now = min(now, datetime.fromisoformat(newest)) if newest else now

    sweeps = {
        "processed_messages": (
            "DELETE FROM processed_messages WHERE rowid IN (SELECT rowid FROM "
            "processed_messages WHERE processed_at < ? LIMIT ?)", cutoff(retention.processed_days)),
        "ledger": (
            "DELETE FROM ledger WHERE id IN (SELECT id FROM ledger WHERE status != 'open' "
            "AND closed_at < ? LIMIT ?)", cutoff(retention.ledger_days, ledger_now)),
        "decisions": (
            "DELETE FROM decisions WHERE id IN (SELECT d.id FROM decisions d WHERE "
            "d.decided_at < ? AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.correlation_id = "
            "d.correlation_id AND l.plan_hash = d.plan_hash) LIMIT ?)",
            cutoff(retention.decisions_days)),
        "objects": (
            "DELETE FROM objects WHERE content_hash IN (SELECT o.content_hash FROM objects o "
            "WHERE o.created_at < ? AND NOT EXISTS (SELECT 1 FROM decisions d WHERE "
            "d.plan_hash = o.content_hash) AND NOT EXISTS (SELECT 1 FROM ledger l WHERE "
            "l.plan_hash = o.content_hash) LIMIT ?)", cutoff(retention.objects_days)),
    }
    deleted: dict[str, int] = {}
    for table, (sql, before) in sweeps.items():
        total = 0
        while True:
            db.execute("BEGIN IMMEDIATE")
            try:
                n = db.execute(sql, (before, retention.chunk)).rowcount
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            total += n
            if n < retention.chunk:
                break
        deleted[table] = total
    db.execute(f"PRAGMA incremental_vacuum({int(vacuum_pages)})").fetchall()
    return deleted
