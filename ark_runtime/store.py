"""MEM_01: ARK's memory store, SQLite in WAL mode, obeying `MEMORY_SPEC.yaml`.

The tables are created from the spec (one source of truth), payloads are deduplicated by the
sha256 of their canonical JSON and zlib-compressed above the spec's threshold, and every write
is idempotent: repeating it has no second effect. That is what lets agents process a
redelivered Redis message safely.

Transactions: each method commits on its own, unless called inside `with store.transaction():`,
in which case everything in the block commits together (e.g. mark_processed + the effect).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ark_runtime import store_schema
from ark_runtime.memory_spec import (
    MEMORY_SPEC,
    StoreCorruption,
    StoreError,
    canonical_json,
    content_hash,
    load_spec,
    table_ddl,
)

__all__ = [
    "MEMORY_SPEC",
    "MemoryStore",
    "StoreCorruption",
    "StoreError",
    "canonical_json",
    "content_hash",
    "load_spec",
]

_KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
BREAKER_STATE_KEY = "hrm.breakers"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _iso(value: datetime | None) -> str:
    if value is None:
        return _now()
    if value.tzinfo is None:
        raise StoreError("timestamps must be timezone-aware")
    return value.astimezone(UTC).isoformat()


# State key: the newest ledger id this release booked. Rows past it were booked by a release
# without the executor (before an upgrade, or after a rollback to it).
LEDGER_MARK = "ledger.booked_through"

class MemoryStore:
    def __init__(self, path: str | Path, *, spec_path: Path = MEMORY_SPEC) -> None:
        self.path = Path(path)
        self.spec = load_spec(spec_path)
        self._lock = threading.RLock()
        self._depth = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (see transaction()).
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._apply_pragmas()
        new = self._db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
        if new:  # takes effect only before the first table: a new store starts incremental
            self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        with self._atomic():
            for name, table in self.spec["tables"].items():
                self._db.execute(table_ddl(name, table))
        problems = self.verify_schema()
        if problems:
            self.close()
            raise StoreError(f"{self.path} does not match MEMORY_SPEC.yaml: " + "; ".join(problems))
        try:
            found = store_schema.migrate(self._db)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(f"{self.path}: {exc}") from None
        # The version an older store was migrated from (None: new, or already current).
        self.migrated_from = None if new or found == store_schema.SCHEMA_VERSION else found
        self.expired_foreign = self._expire_foreign_open_rows()

    def _expire_foreign_open_rows(self) -> int:
        """'open' ledger rows this release did not book (ids past the mark every booking
        moves, LEDGER_MARK): an older release's, from before the upgrade or after a rollback
        to it. That release had no executor, so nothing will fill or close them; left open
        they would hold the exposure limits at their ceiling for good and HRM would approve
        nothing. They become 'expired' (never executed, no P&L), closed at their own time so
        retention ages them like any closed entry. Returns how many."""
        with self._atomic():
            mark = int(self.get_state(LEDGER_MARK, 0))
            cur = self._db.execute("UPDATE ledger SET status = 'expired', closed_at = opened_at "
                                   "WHERE status = 'open' AND id > ?", (mark,))
        return cur.rowcount

    # --- connection -------------------------------------------------------------------------

    def _apply_pragmas(self) -> None:
        p = self.spec["pragmas"]
        self._db.execute(f"PRAGMA busy_timeout = {int(p['busy_timeout_ms'])}")
        mode = self._db.execute(f"PRAGMA journal_mode = {p['journal_mode']}").fetchone()[0]
        if mode.lower() != p["journal_mode"]:
            raise StoreError(
                f"{self.path}: journal_mode is {mode}, spec requires {p['journal_mode']}"
            )
        self._db.execute(f"PRAGMA synchronous = {p['synchronous']}")
        self._db.execute(f"PRAGMA foreign_keys = {'ON' if p['foreign_keys'] else 'OFF'}")

    def pragma(self, name: str) -> Any:
        if not name.isidentifier():
            raise StoreError(f"bad pragma name {name!r}")
        return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    def tune_for_writer(self, synchronous: str, autocheckpoint_pages: int) -> None:
        """HRM's connection: its fsync policy (ARK_HRM_SYNCHRONOUS; in WAL mode NORMAL survives
        a process crash, not a power loss) and a backstop-only auto checkpoint (hrm/wal.py)."""
        if synchronous not in ("FULL", "NORMAL"):
            raise StoreError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self._db.execute(f"PRAGMA synchronous = {synchronous}")
        self._db.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint_pages)}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit. BEGIN IMMEDIATE takes the write lock up front, so two processes
        racing to mark the same message serialize instead of both reading "not processed".
        Nested, it is a SAVEPOINT: a failing inner block rolls back alone and the outer
        transaction goes on (HRM: one transaction per batch, one savepoint per message)."""
        with self._lock:
            if self._depth == 0:
                with self._atomic():
                    yield
                return
            savepoint = f"sp{self._depth}"
            self._db.execute(f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                self._db.execute(f"ROLLBACK TO {savepoint}")
                self._db.execute(f"RELEASE {savepoint}")
                raise
            self._depth -= 1
            self._db.execute(f"RELEASE {savepoint}")

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """What each method runs in: its own transaction, or, inside a caller's, nothing
        extra (no savepoint per statement group: the caller's block is the unit)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                try:
                    self._db.execute("COMMIT")
                except sqlite3.Error:
                    self._db.execute("ROLLBACK")
                    raise

    def verify_schema(self) -> list[str]:
        """Differences between the live tables and the spec (empty when they agree)."""
        problems = []
        for name, table in self.spec["tables"].items():
            live = {r["name"]: r for r in self._db.execute(f"PRAGMA table_info({name})").fetchall()}
            if not live:
                problems.append(f"table {name} is missing")
                continue
            for col, c in table["columns"].items():
                row = live.get(col)
                if row is None:
                    problems.append(f"{name}.{col} is missing")
                elif row["type"].upper() != c["type"].upper():
                    problems.append(f"{name}.{col} is {row['type']}, spec says {c['type']}")
            extra = set(live) - set(table["columns"])
            if extra:
                problems.append(f"{name} has columns not in the spec: {', '.join(sorted(extra))}")
        return problems

    # --- content-addressed objects -----------------------------------------------------------

    def save(self, kind: str, payload: Any) -> str:
        """Store `payload` once; returns its content hash (the same for an identical payload)."""
        if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
            raise StoreError(f"bad object kind {kind!r}: use lower_snake_case, up to 32 chars")
        raw = canonical_json(payload, self.spec)
        digest = hashlib.new(self.spec["dedup"]["algorithm"], raw).hexdigest()
        comp = self.spec["compression"]
        body, compressed = raw, 0
        if len(raw) > comp["threshold_bytes"]:
            packed = zlib.compress(raw, comp["level"])
            if len(packed) < len(raw):
                body, compressed = packed, 1
        with self._atomic():
            self._db.execute(
                "INSERT OR IGNORE INTO objects (content_hash, kind, compressed, size, body, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (digest, kind, compressed, len(raw), body, _now()),
            )
        return digest

    def load(self, digest: str) -> Any:
        row = self._db.execute(
            "SELECT compressed, body FROM objects WHERE content_hash = ?", (digest,)
        ).fetchone()
        if row is None:
            raise KeyError(digest)
        raw = bytes(row["body"])
        if row["compressed"]:
            try:
                raw = zlib.decompress(raw)
            except zlib.error as exc:
                raise StoreCorruption(f"object {digest}: cannot decompress ({exc})") from None
        if hashlib.new(self.spec["dedup"]["algorithm"], raw).hexdigest() != digest:
            raise StoreCorruption(f"object {digest}: content does not match its hash")
        return json.loads(raw)

    def __contains__(self, digest: object) -> bool:
        return (
            self._db.execute("SELECT 1 FROM objects WHERE content_hash = ?", (digest,)).fetchone()
            is not None
        )

    # --- idempotency -------------------------------------------------------------------------

    def mark_processed(self, consumer: str, message_id: str) -> bool:
        """True the first time (consumer, message_id) is seen, False on any repeat. Call it in
        the same `transaction()` as the message's effect so both commit or neither does."""
        for what, value in (("consumer", consumer), ("message_id", message_id)):
            if not isinstance(value, str) or not value or len(value) > 128:
                raise StoreError(f"{what} must be a non-empty string of at most 128 chars")
        with self._atomic():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO processed_messages (consumer, message_id, processed_at) "
                "VALUES (?, ?, ?)",
                (consumer, message_id, _now()),
            )
        return cur.rowcount == 1

    # --- decisions and the paper ledger --------------------------------------------------------

    def record_decision(
        self,
        correlation_id: str,
        plan_hash: str,
        approved: bool,
        violations: list[Mapping[str, Any]],
        *,
        warnings: list[Mapping[str, Any]] | None = None,
        ruleset_version: str = "",
        size_multiplier: float = 1.0,
        decided_at: datetime | None = None,
        plan_saved: bool = False,
    ) -> bool:
        """Store an HRM decision for a plan saved with `save("plan", ...)`. Returns False if
        this (correlation_id, plan_hash) was already decided. `plan_saved`: the caller saved
        the plan in this same transaction, so the lookup that checks it is skipped."""
        if not plan_saved and plan_hash not in self:
            raise StoreError(f"plan {plan_hash} is not stored; save it first")
        with self._atomic():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO decisions (correlation_id, plan_hash, approved, "
                "violations, warnings, ruleset_version, size_multiplier, decided_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    correlation_id,
                    plan_hash,
                    int(bool(approved)),
                    json.dumps(list(violations), default=str),
                    json.dumps(list(warnings or []), default=str),
                    ruleset_version,
                    float(size_multiplier),
                    _iso(decided_at),
                ),
            )
        return cur.rowcount == 1

    def decisions(self, correlation_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM decisions"
        args: tuple[Any, ...] = ()
        if correlation_id is not None:
            sql, args = sql + " WHERE correlation_id = ?", (correlation_id,)
        rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["approved"] = bool(d["approved"])
            d["violations"] = json.loads(d["violations"])
            d["warnings"] = json.loads(d["warnings"])
            out.append(d)
        return out

    def open_position(
        self,
        correlation_id: str,
        plan_hash: str,
        *,
        size_multiplier: float = 1.0,
        opened_at: datetime | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> bool:
        """Book an approved, stored plan in the paper ledger. False if already booked.
        `plan`: the payload just saved under `plan_hash` in this transaction, when the caller
        holds it (HRM), which saves loading and re-hashing it."""
        if not 0 < size_multiplier <= 1:
            raise StoreError("size_multiplier must be in (0, 1]")
        approved = self._db.execute(
            "SELECT 1 FROM decisions WHERE correlation_id = ? AND plan_hash = ? AND approved = 1",
            (correlation_id, plan_hash),
        ).fetchone()
        if approved is None:
            raise StoreError(f"plan {plan_hash} has no approved decision for {correlation_id}")
        if plan is None:
            plan = self.load(plan_hash)
        with self._atomic():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO ledger (correlation_id, plan_hash, symbol, direction, "
                "entry, stop_loss, target, quantity, position_size, status, opened_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
                (
                    correlation_id,
                    plan_hash,
                    plan["symbol"],
                    plan["direction"],
                    plan["entry"],
                    plan["stop_loss"],
                    plan["target"],
                    plan["quantity"] * size_multiplier,
                    plan["position_size"] * size_multiplier,
                    _iso(opened_at),
                ),
            )
            if cur.rowcount == 1:  # booked by this release: see _expire_foreign_open_rows
                self.set_state(LEDGER_MARK, cur.lastrowid)  # same transaction
        return cur.rowcount == 1

    def close_position(
        self, ledger_id: int, exit_price: float, closed_at: datetime | None = None
    ) -> float:
        """Close an open paper position; returns its P&L as a fraction of the account (the
        figure `BreakerState.record_result` takes). Closing twice is refused."""
        if not exit_price > 0:
            raise StoreError("exit_price must be > 0")
        with self._atomic():
            row = self._db.execute(
                "SELECT direction, entry, position_size, status FROM ledger WHERE id = ?",
                (ledger_id,),
            ).fetchone()
            if row is None:
                raise StoreError(f"no ledger entry {ledger_id}")
            if row["status"] != "open":
                raise StoreError(f"ledger entry {ledger_id} is already {row['status']}")
            sign = 1 if row["direction"] == "long" else -1
            pnl = row["position_size"] * sign * (exit_price - row["entry"]) / row["entry"]
            self._db.execute(
                "UPDATE ledger SET status = 'closed', exit_price = ?, pnl = ?, closed_at = ? "
                "WHERE id = ?",
                (exit_price, pnl, _iso(closed_at), ledger_id),
            )
        return pnl

    def fill_position(self, correlation_id: str, fill_price: float,
                      filled_at: datetime) -> bool:
        """The executor filled the open entry of flow `correlation_id`: its entry becomes the
        fill price and its opened_at the fill bar's time. False if no open entry matches."""
        if not fill_price > 0:
            raise StoreError("fill_price must be > 0")
        with self._atomic():
            cur = self._db.execute(
                "UPDATE ledger SET entry = ?, opened_at = ? WHERE correlation_id = ? "
                "AND status = 'open'", (fill_price, _iso(filled_at), correlation_id))
        return cur.rowcount > 0

    def settle_position(self, correlation_id: str, exit_price: float, pnl: float,
                        closed_at: datetime) -> bool:
        """The executor closed flow `correlation_id` at `exit_price` with `pnl` (fraction of
        the account, net of fees: the executor's figure). False if it is not open here."""
        if not exit_price > 0:
            raise StoreError("exit_price must be > 0")
        with self._atomic():
            cur = self._db.execute(
                "UPDATE ledger SET status = 'closed', exit_price = ?, pnl = ?, closed_at = ? "
                "WHERE correlation_id = ? AND status = 'open'",
                (exit_price, float(pnl), _iso(closed_at), correlation_id))
        return cur.rowcount > 0

    def open_exposure(self) -> dict[str, float]:
        """Open exposure per symbol (sum of position_size of open entries: approved and not
        yet closed, filled or not), fractions of the account."""
        rows = self._db.execute(
            "SELECT symbol, SUM(position_size) AS size FROM ledger WHERE status = 'open' "
            "GROUP BY symbol").fetchall()
        return {r["symbol"]: float(r["size"]) for r in rows}

    def open_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM ledger WHERE status = 'open'").fetchone()[0]

    def prune(self, retention: store_schema.Retention | None = None,
              now: datetime | None = None) -> dict[str, int]:
        """Apply retention (store_schema.py says what stays for audit) as of `now`."""
        with self._lock:
            if self._depth:
                raise StoreError("prune runs outside any transaction (it commits in chunks)")
            return store_schema.prune(self._db, retention or store_schema.Retention(),
                                      now or datetime.now(UTC))

    def ledger(self, status: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM ledger", ()
        if status is not None:
            sql, args = sql + " WHERE status = ?", (status,)
        return [dict(r) for r in self._db.execute(sql + " ORDER BY id", args).fetchall()]

    # --- named state ---------------------------------------------------------------------------

    def set_state(self, key: str, value: Any) -> None:
        text = canonical_json(value, self.spec).decode("utf-8")
        with self._atomic():
            self._db.execute(
                "INSERT INTO state (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (key, text, _now()),
            )

    def get_state(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def get_breaker_state(self) -> dict[str, Any] | None:
        """The HRM circuit-breaker state (`BreakerState.model_dump(mode="json")`), if any."""
        return self.get_state(BREAKER_STATE_KEY)

    def set_breaker_state(self, state: Mapping[str, Any]) -> None:
        self.set_state(BREAKER_STATE_KEY, dict(state))
