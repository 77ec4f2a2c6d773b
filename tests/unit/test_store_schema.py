"""MEM_01 / AGENT_04: memory.db has a schema version with forward migrations, and retention
per table with an incremental vacuum (ark_runtime/store_schema.py)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ark_runtime.memory_spec import load_spec, table_ddl
from ark_runtime.store import MemoryStore, StoreError
from ark_runtime.store_schema import SCHEMA_VERSION, Retention

pytestmark = pytest.mark.requirement("MEM_01")

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PLAN = {"symbol": "AAPL", "direction": "long", "entry": 100.0, "stop_loss": 95.0,
        "target": 110.0, "quantity": 10.0, "position_size": 0.05}


def previous_release_store(path: Path) -> None:
    """A store as the release before versions wrote it: the spec's tables, user_version 0,
    auto_vacuum off, some data."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = wal")
    for name, table in load_spec()["tables"].items():
        con.execute(table_ddl(name, table))
    con.commit()
    con.close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO state (key, value, updated_at) VALUES ('k', '1', ?)",
                (NOW.isoformat(),))
    con.execute("PRAGMA user_version = 0")
    con.commit()
    con.close()


def test_a_store_from_the_previous_release_opens_and_migrates(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    previous_release_store(db)
    with MemoryStore(db) as store:
        assert store.migrated_from == 1
        assert store.pragma("user_version") == SCHEMA_VERSION
        assert store.pragma("auto_vacuum") == 2  # incremental from now on
        assert store.get_state("k") == 1  # the data came along
        indexes = {r[0] for r in store._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"ledger_status", "processed_at"} <= indexes
    with MemoryStore(db) as store:  # a second open has nothing to do
        assert store.migrated_from is None


def test_a_new_store_starts_current_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    with MemoryStore(tmp_path / "new.db") as store:
        assert store.migrated_from is None
        assert store.pragma("user_version") == SCHEMA_VERSION
        assert store.pragma("auto_vacuum") == 2
    con = sqlite3.connect(tmp_path / "new.db")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer ARK release"):
        MemoryStore(tmp_path / "new.db")


def decide(store: MemoryStore, n: int, at: datetime, approve: bool = False) -> str:
    plan = {**PLAN, "n": n}
    cid = f"00000000-0000-4000-8000-{n:012d}"
    with store.transaction():
        digest = store.save("plan", plan)
        store.mark_processed("hrm", cid)
        store.record_decision(cid, digest, approve, [], decided_at=at, plan_saved=True)
        if approve:
            store.open_position(cid, digest, plan=plan, opened_at=at)
    return cid


def test_retention_prunes_each_table_and_keeps_what_audit_and_open_exposure_need(
        tmp_path: Path) -> None:
    with MemoryStore(tmp_path / "memory.db") as store:
        old, recent = NOW - timedelta(days=500), NOW - timedelta(days=1)
        for n in range(30):
            decide(store, n, old)
        still_open = decide(store, 100, old, approve=True)
        closed_old = decide(store, 101, old, approve=True)
        store.settle_position(closed_old, 96.0, -0.002, old)
        keep = decide(store, 102, recent, approve=True)
        store.settle_position(keep, 101.0, 0.001, recent)  # the newest close: ages count from it
        # processed_at is the wall clock of the mark: age them like the decisions.
        store._db.execute("UPDATE processed_messages SET processed_at = ? WHERE message_id "
                          "!= ?", (old.isoformat(), keep))
        store._db.execute("UPDATE objects SET created_at = ?", (old.isoformat(),))
        deleted = store.prune(Retention(chunk=7), now=NOW)
        assert deleted == {"processed_messages": 32, "ledger": 1, "decisions": 31,
                           "objects": 31}
        left = {d["correlation_id"] for d in store.decisions()}
        assert left == {still_open, keep}  # open exposure and recent history stay
        assert [r["correlation_id"] for r in store.ledger()] == [still_open, keep]
        objects = store._db.execute("SELECT COUNT(*) FROM objects").fetchone()[0]
        marks = store._db.execute("SELECT message_id FROM processed_messages").fetchall()
        assert objects == 2 and [m[0] for m in marks] == [keep]
        assert store.prune(now=NOW) == dict.fromkeys(deleted, 0)
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_historical_feeds_positions_age_in_market_time_not_by_the_wall_clock(
        tmp_path: Path) -> None:
    """A replayed feed closes positions years before the wall clock: they age from the
    newest close, so HRM's sweep does not empty the ledger it has just written."""
    with MemoryStore(tmp_path / "memory.db") as store:
        years_ago = NOW - timedelta(days=3 * 365)
        first = decide(store, 1, NOW, approve=True)
        store.settle_position(first, 99.0, -0.001, years_ago - timedelta(days=401))
        last = decide(store, 2, NOW, approve=True)
        store.settle_position(last, 101.0, 0.001, years_ago)
        assert store.prune(now=NOW)["ledger"] == 1
        assert [r["correlation_id"] for r in store.ledger()] == [last]


def test_prune_refuses_to_run_inside_a_transaction(tmp_path: Path) -> None:
    with MemoryStore(tmp_path / "memory.db") as store, store.transaction(), \
            pytest.raises(StoreError, match="outside any transaction"):
        store.prune(now=NOW)


def test_approvals_the_release_before_the_executor_booked_do_not_hold_exposure(
        tmp_path: Path) -> None:
    """Nothing will ever fill or close them: counted as open they kept the exposure limits at
    their ceiling after an upgrade (the rolling lab test: HRM approved nothing)."""
    db = tmp_path / "memory.db"
    previous_release_store(db)
    con = sqlite3.connect(db)
    for i in range(3):
        con.execute("INSERT INTO ledger (correlation_id, plan_hash, symbol, direction, entry, "
                    "stop_loss, target, quantity, position_size, status, opened_at) VALUES "
                    "(?, 'h', 'AAPL', 'long', 100, 95, 110, 10, 0.05, 'open', ?)",
                    (f"c{i}", (NOW - timedelta(days=i)).isoformat()))
    con.commit()
    con.close()
    with MemoryStore(db) as store:
        assert store.open_exposure() == {} and store.open_count() == 0
        rows = store._db.execute("SELECT status, closed_at, opened_at, pnl FROM ledger").fetchall()
        assert [(r["status"], r["closed_at"] == r["opened_at"], r["pnl"]) for r in rows] == \
            [("expired", True, None)] * 3
        # Retention ages them like closed entries: 400 days on, they go.
        assert store.prune(now=NOW + timedelta(days=500))["ledger"] == 3


def test_a_current_stores_open_positions_stay_open_across_opens(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    with MemoryStore(db) as store:
        plan_hash = store.save("plan", PLAN)
        store.record_decision("c", plan_hash, True, [])
        assert store.open_position("c", plan_hash, opened_at=NOW)
    with MemoryStore(db) as store:
        assert store.expired_foreign == 0
        assert store.open_exposure() == {"AAPL": 0.05}


def test_rows_an_older_release_booked_after_a_rollback_expire_on_the_next_open(
        tmp_path: Path) -> None:
    """A canary rolled back to the release before the executor keeps booking 'open' rows in
    the migrated store; the next upgrade expires those, never this release's own."""
    db = tmp_path / "memory.db"
    with MemoryStore(db) as store:
        plan_hash = store.save("plan", PLAN)
        store.record_decision("mine", plan_hash, True, [])
        assert store.open_position("mine", plan_hash, opened_at=NOW)
        store._db.execute("INSERT INTO ledger (correlation_id, plan_hash, symbol, direction, "
                          "entry, stop_loss, target, quantity, position_size, status, opened_at) "
                          "VALUES ('theirs', ?, 'AAPL', 'long', 100, 95, 110, 10, 0.05, 'open', ?)",
                          (plan_hash, NOW.isoformat()))
    with MemoryStore(db) as store:
        assert store.expired_foreign == 1
        assert [(r["correlation_id"], r["status"]) for r in store.ledger()] == [
            ("mine", "open"), ("theirs", "expired")]
