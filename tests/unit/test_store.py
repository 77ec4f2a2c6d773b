"""MEM_01: the memory store obeys MEMORY_SPEC.yaml: tables, WAL, dedup, compression,
idempotent writes."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ark_runtime.hrm import BreakerState
from ark_runtime.store import (
    MEMORY_SPEC,
    MemoryStore,
    StoreCorruption,
    StoreError,
    canonical_json,
    content_hash,
)
from tests.support.store_sql import is_processed, object_count

pytestmark = pytest.mark.requirement("MEM_01")

SPEC = yaml.safe_load(MEMORY_SPEC.read_text())
T = datetime(2024, 3, 1, 15, 0, tzinfo=UTC)
PLAN = {"symbol": "AAPL", "direction": "long", "entry": 100.0, "stop_loss": 96.0,
        "target": 110.0, "quantity": 80.0, "position_size": 0.08}  # fmt: skip
CID = "0b6f3c4e-9b0e-4f57-8a43-1f8f1b7c0a01"


@pytest.fixture
def store(tmp_path: Path) -> MemoryStore:
    s = MemoryStore(tmp_path / "ark.db")
    yield s
    s.close()


def test_spec_is_wellformed() -> None:
    assert SPEC["pragmas"]["journal_mode"] == "wal"
    assert SPEC["pragmas"]["synchronous"] in ("NORMAL", "FULL")
    assert SPEC["dedup"]["algorithm"] == "sha256"
    assert SPEC["compression"]["algorithm"] == "zlib"
    assert {"objects", "decisions", "ledger", "processed_messages", "state"} <= set(SPEC["tables"])


def test_tables_and_columns_match_spec(store: MemoryStore, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "ark.db")
    for name, table in SPEC["tables"].items():
        info = db.execute(f"PRAGMA table_info({name})").fetchall()
        live = {row[1]: row for row in info}
        assert list(live) == list(table["columns"]), name
        for col, c in table["columns"].items():
            _, _, ctype, notnull, _, pk = live[col]
            assert ctype == c["type"], (name, col)
            assert bool(notnull) == (not c.get("nullable", True)), (name, col)
        pk_cols = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5]]
        assert pk_cols == table["primary_key"], name
        for unique in table.get("unique", []):
            idx = [i for i in db.execute(f"PRAGMA index_list({name})").fetchall() if i[2]]
            cols = [
                [c[2] for c in db.execute(f"PRAGMA index_info({i[1]})").fetchall()] for i in idx
            ]
            assert unique in cols, (name, unique)
        fks = {(r[3], f"{r[2]}.{r[4]}") for r in db.execute(f"PRAGMA foreign_key_list({name})")}
        assert fks == set(table.get("foreign_keys", {}).items()), name
    assert store.verify_schema() == []


def test_pragmas_match_spec(store: MemoryStore, tmp_path: Path) -> None:
    assert store.pragma("journal_mode") == "wal"
    levels = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}
    assert store.pragma("synchronous") == levels[SPEC["pragmas"]["synchronous"]]
    assert store.pragma("foreign_keys") == 1
    # WAL is a property of the file: a fresh connection sees it too
    db = sqlite3.connect(tmp_path / "ark.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopen_is_idempotent(tmp_path: Path) -> None:
    with MemoryStore(tmp_path / "a.db") as s:
        h = s.save("plan", PLAN)
    with MemoryStore(tmp_path / "a.db") as s:
        assert s.load(h) == PLAN and object_count(s) == 1


def test_schema_mismatch_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "old.db")
    db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"state\.updated_at is missing"):
        MemoryStore(tmp_path / "old.db")


def test_content_hash_is_sha256_of_canonical_json() -> None:
    import hashlib

    payload = {"b": 1, "a": [1.5, "é"]}
    canon = canonical_json(payload)
    assert canon == '{"a":[1.5,"é"],"b":1}'.encode()
    assert content_hash(payload) == hashlib.sha256(canon).hexdigest()
    assert content_hash({"a": [1.5, "é"], "b": 1}) == content_hash(payload)


def test_save_twice_stores_once(store: MemoryStore) -> None:
    h1 = store.save("plan", PLAN)
    h2 = store.save("plan", dict(reversed(list(PLAN.items()))))
    assert h1 == h2 == content_hash(PLAN)
    assert object_count(store) == 1
    assert h1 in store


def test_small_payload_not_compressed_large_one_is(store: MemoryStore, tmp_path: Path) -> None:
    small = store.save("plan", PLAN)
    big_payload = {"bars": [{"close": 100.0 + i % 7, "symbol": "AAPL"} for i in range(500)]}
    assert len(canonical_json(big_payload)) > SPEC["compression"]["threshold_bytes"]
    big = store.save("snapshot", big_payload)
    db = sqlite3.connect(tmp_path / "ark.db")
    rows = dict(db.execute("SELECT content_hash, compressed FROM objects").fetchall())
    assert rows == {small: 0, big: 1}
    size, body = db.execute(
        "SELECT size, length(body) FROM objects WHERE content_hash = ?", (big,)
    ).fetchone()
    assert size == len(canonical_json(big_payload)) and body < size
    assert store.load(big) == big_payload


def test_incompressible_large_payload_stored_raw(store: MemoryStore, tmp_path: Path) -> None:
    import random

    rnd = random.Random(0)
    payload = "".join(chr(rnd.randint(0x4E00, 0x9FFF)) for _ in range(3000))
    h = store.save("blob", payload)
    db = sqlite3.connect(tmp_path / "ark.db")
    assert db.execute("SELECT compressed FROM objects").fetchone()[0] in (0, 1)
    assert store.load(h) == payload


def test_load_detects_corruption(store: MemoryStore, tmp_path: Path) -> None:
    h = store.save("plan", PLAN)
    db = sqlite3.connect(tmp_path / "ark.db")
    db.execute("UPDATE objects SET body = ? WHERE content_hash = ?", (b'{"symbol":"EVIL"}', h))
    db.commit()
    with pytest.raises(StoreCorruption, match="does not match"):
        store.load(h)


def test_load_unknown_hash(store: MemoryStore) -> None:
    with pytest.raises(KeyError):
        store.load("0" * 64)


def test_circular_and_surrogate_payloads_refused(store: MemoryStore) -> None:
    loop: list[Any] = []
    loop.append(loop)
    for payload in (loop, "\ud800"):
        with pytest.raises(StoreError, match="canonical JSON"):
            store.save("plan", payload)


@pytest.mark.parametrize("payload", [float("nan"), {"x": float("inf")}, {1: "int key"}, {"s": {1}}])
def test_non_canonical_payload_refused(store: MemoryStore, payload: Any) -> None:
    with pytest.raises(StoreError, match="canonical JSON"):
        store.save("plan", payload)


@pytest.mark.parametrize("kind", ["", "Plan", "plan;drop", "x" * 40, None])
def test_bad_kind_refused(store: MemoryStore, kind: Any) -> None:
    with pytest.raises(StoreError, match="kind"):
        store.save(kind, PLAN)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=json_values, pad=st.integers(min_value=0, max_value=6000))
def test_property_round_trip_and_save_twice_stores_once(
    store: MemoryStore, payload: Any, pad: int
) -> None:
    doc = {"payload": payload, "pad": "x" * pad}  # pad crosses the compression threshold
    before = object_count(store)
    h = store.save("prop", doc)
    assert store.load(h) == doc
    after_first = object_count(store)
    assert after_first - before in (0, 1)  # 0 when hypothesis repeats an example
    assert store.save("prop", json.loads(json.dumps(doc))) == h
    assert object_count(store) == after_first
    assert h == content_hash(doc)


def test_mark_processed_once(store: MemoryStore) -> None:
    assert store.mark_processed("hrm", "m-1") is True
    assert store.mark_processed("hrm", "m-1") is False
    assert store.mark_processed("kenny", "m-1") is True  # per consumer
    assert is_processed(store, "hrm", "m-1") and not is_processed(store, "hrm", "m-2")
    with pytest.raises(StoreError):
        store.mark_processed("", "m")


def test_mark_and_effect_commit_together(store: MemoryStore) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        assert store.mark_processed("hrm", "m-9")
        store.save("plan", PLAN)
        raise RuntimeError("crash before commit")
    # nothing happened, so the redelivered message is processed for real
    assert object_count(store) == 0
    assert store.mark_processed("hrm", "m-9") is True


def test_mark_processed_atomic_across_connections(tmp_path: Path) -> None:
    stores = [MemoryStore(tmp_path / "shared.db") for _ in range(8)]
    results: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def worker(s: MemoryStore) -> None:
        barrier.wait()
        results.append(s.mark_processed("hrm", "same-message"))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    for s in stores:
        s.close()


def test_decisions_recorded_once(store: MemoryStore) -> None:
    h = store.save("plan", PLAN)
    v = [{"rule_id": "PAT-001", "severity": "error", "message": "low"}]
    assert store.record_decision(CID, h, False, v, ruleset_version="1.0.0", decided_at=T)
    assert not store.record_decision(CID, h, True, [], decided_at=T)
    [d] = store.decisions(CID)
    assert d["approved"] is False and d["violations"] == v and d["plan_hash"] == h
    assert d["decided_at"] == T.isoformat() and d["ruleset_version"] == "1.0.0"
    with pytest.raises(StoreError, match="save it first"):
        store.record_decision(CID, "f" * 64, True, [])


def test_paper_ledger(store: MemoryStore) -> None:
    h = store.save("plan", PLAN)
    with pytest.raises(StoreError, match="no approved decision"):
        store.open_position(CID, h)
    store.record_decision(CID, h, True, [], size_multiplier=0.5)
    assert store.open_position(CID, h, size_multiplier=0.5, opened_at=T)
    assert not store.open_position(CID, h, size_multiplier=0.5)
    [row] = store.ledger("open")
    assert row["quantity"] == 40 and row["position_size"] == pytest.approx(0.04)
    pnl = store.close_position(row["id"], 95.0, closed_at=T)
    assert pnl == pytest.approx(0.04 * -0.05)
    assert store.ledger("open") == [] and store.ledger("closed")[0]["pnl"] == pytest.approx(pnl)
    with pytest.raises(StoreError, match="already closed"):
        store.close_position(row["id"], 99.0)


def test_short_position_pnl(store: MemoryStore) -> None:
    plan = dict(PLAN, direction="short", stop_loss=104.0, target=90.0)
    h = store.save("plan", plan)
    store.record_decision(CID, h, True, [])
    store.open_position(CID, h)
    assert store.close_position(store.ledger()[0]["id"], 90.0) == pytest.approx(0.08 * 0.1)


def test_breaker_state_persists(tmp_path: Path) -> None:
    state = BreakerState(day=T.date()).record_result(-0.01, T)
    with MemoryStore(tmp_path / "b.db") as s:
        assert s.get_breaker_state() is None
        s.set_breaker_state(state.model_dump(mode="json"))
    with MemoryStore(tmp_path / "b.db") as s:
        assert BreakerState.model_validate(s.get_breaker_state()) == state
        s.set_state("other", [1, 2])
        assert s.get_state("other") == [1, 2] and s.get_state("none", 7) == 7


def test_nested_transaction_is_a_savepoint_that_rolls_back_alone(store: MemoryStore) -> None:
    # HRM: one transaction per batch, one savepoint per message; a failing message must not
    # take the batch's other decisions with it.
    with store.transaction():
        with store.transaction():
            assert store.mark_processed("hrm", "m1")
        with pytest.raises(RuntimeError), store.transaction():
            assert store.mark_processed("hrm", "m2")
            raise RuntimeError("plan 2 fails")
        with store.transaction():
            assert store.mark_processed("hrm", "m3")
    assert is_processed(store, "hrm", "m1") and is_processed(store, "hrm", "m3")
    assert not is_processed(store, "hrm", "m2")


def test_failing_outer_transaction_rolls_back_every_savepoint(store: MemoryStore) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        with store.transaction():
            store.mark_processed("hrm", "m1")
        raise RuntimeError("batch commit fails")
    assert not is_processed(store, "hrm", "m1")


def test_booking_with_the_callers_plan_books_what_a_load_would(tmp_path: Path) -> None:
    # HRM passes the plan it just saved (and plan_saved=True) to skip two lookups and a
    # re-hash: the ledger row must be exactly the one booked from the stored copy.
    rows = []
    for name, fast in (("a.db", False), ("b.db", True)):
        with MemoryStore(tmp_path / name) as s, s.transaction():
            h = s.save("plan", PLAN)
            s.record_decision(CID, h, True, [], decided_at=T, plan_saved=fast)
            s.open_position(CID, h, size_multiplier=0.5, opened_at=T,
                            plan=PLAN if fast else None)
            rows.append(s.ledger())
    assert rows[0] == rows[1] and len(rows[0]) == 1


def test_background_checkpoints_keep_the_wal_short(tmp_path: Path) -> None:
    # hrm/wal.py: HRM's own commits no longer checkpoint (backstop only); the thread does,
    # while writes go on, and nothing committed is lost.
    from ark_runtime.hrm.wal import Checkpointer
    path = tmp_path / "w.db"
    with MemoryStore(path) as s:
        s.tune_for_writer("NORMAL", 100_000)
        assert s.pragma("wal_autocheckpoint") == 100_000 and s.pragma("synchronous") == 1
        with pytest.raises(StoreError, match="FULL or NORMAL"):
            s.tune_for_writer("OFF", 100)
        worker = Checkpointer(path, every_s=0.01)
        worker.start()
        for i in range(400):
            s.save("plan", dict(PLAN, quantity=float(i)))
        deadline = datetime.now(UTC).timestamp() + 10
        while worker.checkpoints < 3 and datetime.now(UTC).timestamp() < deadline:
            threading.Event().wait(0.02)
        worker.stop()
        assert worker.checkpoints >= 3 and not worker.is_alive()
        busy, log_frames, copied = s._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and copied == log_frames
        assert object_count(s) == 400
