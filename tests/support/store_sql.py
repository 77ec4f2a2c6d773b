"""What tests read straight from a MemoryStore's SQLite database. The product never needs
these questions answered, so they live here, as plain SQL, not as store methods."""

from __future__ import annotations

from ark_runtime.store import MemoryStore


def integrity_ok(store: MemoryStore) -> bool:
    return store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def object_count(store: MemoryStore) -> int:
    return store._db.execute("SELECT COUNT(*) FROM objects").fetchone()[0]


def is_processed(store: MemoryStore, consumer: str, message_id: str) -> bool:
    row = store._db.execute(
        "SELECT 1 FROM processed_messages WHERE consumer = ? AND message_id = ?",
        (consumer, message_id),
    ).fetchone()
    return row is not None
