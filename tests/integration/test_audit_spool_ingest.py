"""SEC_03 with real processes and files: two API-like writers append to the spool while
`ark audit ingest` runs again and again; an ingester killed between claim and append, or
between an append and its marker, loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ark_runtime.host.audit.chain import iter_records, verify_dir
from ark_runtime.host.audit.ingest import ingest
from ark_runtime.host.audit.log import AuditLog

pytestmark = pytest.mark.requirement("SEC_03")
REPO = Path(__file__).resolve().parents[2]

WRITER = """
import sys, time
from pathlib import Path
from ark_runtime.api import audit_hook
spool, name, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    audit_hook.record(name, "unit.restart", {"unit": "ark-api.service", "n": i}, "ok",
                      directory=spool)
    time.sleep(0.002)  # an API's pace, so ingests interleave with the writes
"""

# An ingester that dies (os._exit: no cleanup, like a kill -9) at a chosen point.
CRASHER = """
import os, sys
from pathlib import Path
from ark_runtime.host.audit import ingest as audit_ingest
from ark_runtime.host.audit.log import AuditLog
spool, audit, where = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if where == "after-claim":
    audit_ingest.claim(spool)
    os._exit(9)
real, calls = audit_ingest._save_marker, []
def save(*a):
    calls.append(a)
    if len(calls) == 2:
        os._exit(9)  # line 2 is in the chain, its marker is not
    real(*a)
audit_ingest._save_marker = save
audit_ingest.ingest(spool, AuditLog(audit))
"""


def env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "ARK_AUDIT_DIR": str(tmp / "audit"),
            "ARK_AUDIT_SPOOL_DIR": str(tmp / "spool"), "ARK_ACTOR": "root"}


def ark_ingest(tmp: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "ark_runtime.cli", "audit", "ingest", "--json"],
                         env=env(tmp), capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def console_rows(tmp: Path) -> list[tuple[str, int]]:
    return [(r["who"], int(r["args"]["n"])) for _f, r in iter_records(tmp / "audit")
            if r["action"] == "console.unit.restart"]


def test_two_writers_and_a_running_ingester_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    n = 150
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "spool"), who,
                                 str(n)], env=env(tmp_path)) for who in ("alice", "bob")]
    runs, log = 0, AuditLog(tmp_path / "audit")
    while any(w.poll() is None for w in writers):
        ingest(tmp_path / "spool", log)  # claims while the writers are mid-stream
        runs += 1
    assert all(w.wait(30) == 0 for w in writers)
    ark_ingest(tmp_path)  # the command, as the path unit runs it
    rows = console_rows(tmp_path)
    assert runs >= 5, "the writers finished before a second ingest: nothing was concurrent"
    for who in ("alice", "bob"):
        mine = [i for w, i in rows if w == f"console:{who}"]
        assert mine == list(range(n)), f"{who}: lost or duplicated records"
    assert verify_dir(tmp_path / "audit").ok
    assert not list((tmp_path / "spool").iterdir())


@pytest.mark.parametrize("where", ["after-claim", "between-append-and-marker"])
def test_a_killed_ingester_neither_loses_nor_duplicates(tmp_path: Path, where: str) -> None:
    subprocess.run([sys.executable, "-c", WRITER, str(tmp_path / "spool"), "carol", "5"],
                   env=env(tmp_path), check=True, timeout=60)
    crash = subprocess.run([sys.executable, "-c", CRASHER, str(tmp_path / "spool"),
                            str(tmp_path / "audit"), where], env=env(tmp_path), timeout=60)
    assert crash.returncode == 9
    claimed = [p.name for p in (tmp_path / "spool").iterdir()]
    assert claimed and all(p.startswith("claimed-") for p in claimed)
    # The API writes on into a fresh spool file meanwhile.
    subprocess.run([sys.executable, "-c", WRITER, str(tmp_path / "spool"), "dave", "2"],
                   env=env(tmp_path), check=True, timeout=60)
    time.sleep(0.01)
    ark_ingest(tmp_path)
    rows = console_rows(tmp_path)
    assert [i for w, i in rows if w == "console:carol"] == list(range(5))
    assert [i for w, i in rows if w == "console:dave"] == [0, 1]
    assert verify_dir(tmp_path / "audit").ok
