"""MEM_03: a snapshot taken while another process writes is a consistent point in time.

The writer commits, in one transaction each, an object {"i": n} and state "count" = n + 1.
In any consistent copy the number of objects equals "count"; a torn copy would disagree or fail
integrity_check. Real processes, real SQLite, no Redis needed.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ark_runtime.host.snapshot.restore import restore
from ark_runtime.host.snapshot.snapshots import create_snapshot, verify_snapshot
from ark_runtime.store import MemoryStore
from tests.support.store_sql import integrity_ok, object_count

REPO = Path(__file__).resolve().parents[2]
WRITER = """
import sys, time
from ark_runtime.store import MemoryStore
store = MemoryStore(sys.argv[1])
n = 0
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    with store.transaction():
        store.save("tick", {"i": n, "pad": "x" * 400})
        store.set_state("count", n + 1)
    n += 1
print(n)
"""


@pytest.mark.requirement("MEM_03")
def test_snapshot_consistent_under_concurrent_writer(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARK_RUN_DIR", str(tmp_path / "run"))
    db = tmp_path / "memory.db"
    MemoryStore(db).close()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), "4"], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    counts = []
    try:
        time.sleep(0.5)
        for _ in range(8):
            snap = create_snapshot("interval", store=db, root=tmp_path / "snaps",
                                   config_dir=tmp_path)
            assert verify_snapshot(snap) == []
            con = sqlite3.connect(f"file:{snap.path / 'memory.db'}?mode=ro", uri=True)
            objects = con.execute("SELECT count(*) FROM objects").fetchone()[0]
            row = con.execute("SELECT value FROM state WHERE key='count'").fetchone()
            con.close()
            assert snap.manifest["integrity_check"] == "ok"
            assert row is not None and json.loads(row[0]) == objects
            counts.append(objects)
            time.sleep(0.2)
    finally:
        total = int(writer.communicate(timeout=30)[0])
    assert writer.returncode == 0
    assert counts == sorted(counts) and counts[-1] > counts[0] > 0, counts
    assert total > counts[-1]
    # And the newest consistent copy restores into a store that opens and checks clean.
    restore("latest", store=tmp_path / "restored.db", root=tmp_path / "snaps", config_dir=tmp_path)
    with MemoryStore(tmp_path / "restored.db") as store:
        assert integrity_ok(store) and object_count(store) == counts[-1]
