"""SEC_03 with real processes: two API processes send records over journald's native protocol
while `ark audit ingest` runs again and again, and an ingester killed between an append and
its state loses and duplicates nothing. No systemd runs on this machine: the socket is the
stand-in journald of tests/support/journal.py and `journalctl` a stand-in that prints its
entries after `--after-cursor`, as the real one does (the real pair runs on the lab:
tests/e2e/test_console_lab.py)."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from ark_runtime.host.audit.chain import iter_records, verify_dir
from tests.support.journal import FakeJournald

pytestmark = pytest.mark.requirement("SEC_03")
REPO = Path(__file__).resolve().parents[2]
ME = pwd.getpwuid(os.getuid()).pw_name

WRITER = """
import sys, time
from ark_runtime.api import audit_hook
name, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    audit_hook.record(name, "unit.restart", {"unit": "ark-api.service", "n": i}, "ok")
    time.sleep(0.002)  # an API's pace, so ingests interleave with the sends
"""

# journalctl as far as the ingester uses it: --output=json, --after-cursor, the match.
JOURNALCTL = """#!{python}
import json, sys
cursor = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--after-cursor=")), None)
lines = open({entries!r}, "rb").read().splitlines()
seen = cursor is None
for line in lines:
    if seen:
        sys.stdout.buffer.write(line + b"\\n")
    elif json.loads(line)["__CURSOR"] == cursor:
        seen = True
"""

# An ingester that dies (os._exit: no cleanup, like a kill -9) after appending its third
# record, before saving the state that says so.
CRASHER = """
import os, sys
from ark_runtime.cli import main
from ark_runtime.host.audit.ingest import Ingester
real, calls = Ingester._save_state, []
def save(self, cursor):
    calls.append(cursor)
    if len(calls) == 3:
        os._exit(9)
    real(self, cursor)
Ingester._save_state = save
sys.exit(main(["audit", "ingest", "--api-user", sys.argv[1]]))
"""


@pytest.fixture
def journal(tmp_path: Path):
    j = FakeJournald().start()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "journalctl"
    tool.write_text(JOURNALCTL.format(python=sys.executable,
                                      entries=str(tmp_path / "journal.jsonl")))
    tool.chmod(0o755)
    j.env = {**os.environ, "PYTHONPATH": str(REPO), "ARK_AUDIT_DIR": str(tmp_path / "audit"),
             "ARK_AUDIT_JOURNAL_SOCKET": str(j.path), "ARK_AUDIT_SINK": "journal",
             "ARK_ACTOR": "root", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    j.dump = lambda: (tmp_path / "journal.jsonl").write_bytes(
        b"".join(line + b"\n" for line in j.json_lines()))
    yield j
    j.close()


def ark_ingest(journal, *extra: str) -> subprocess.CompletedProcess:
    journal.dump()
    return subprocess.run([sys.executable, "-m", "ark_runtime.cli", "audit", "ingest",
                           "--api-user", ME, *extra], env=journal.env, capture_output=True,
                          text=True, timeout=60)


def console_rows(tmp: Path) -> list[tuple[str, int]]:
    return [(r["who"], int(r["args"]["n"])) for _f, r in iter_records(tmp / "audit")
            if r["action"] == "console.unit.restart"]


def test_two_api_processes_and_a_running_ingester_lose_and_duplicate_nothing(
        tmp_path: Path, journal) -> None:
    n = 400
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, who, str(n)], env=journal.env)
               for who in ("alice", "bob")]
    runs = 0
    while any(w.poll() is None for w in writers):
        assert ark_ingest(journal).returncode == 0  # while the writers are mid-stream
        runs += 1
    assert all(w.wait(30) == 0 for w in writers)
    out = ark_ingest(journal, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["refused"] == 0
    assert runs >= 2, "the writers finished before a second ingest: nothing was concurrent"
    rows = console_rows(tmp_path)
    for who in ("alice", "bob"):
        mine = [i for w, i in rows if w == f"console:{who}"]
        assert mine == list(range(n)), f"{who}: lost or duplicated records"
    gaps = [r for _f, r in iter_records(tmp_path / "audit") if r["action"] == "console.audit-gap"]
    assert gaps == []
    assert verify_dir(tmp_path / "audit").ok


def test_a_killed_ingester_neither_loses_nor_duplicates(tmp_path: Path, journal) -> None:
    subprocess.run([sys.executable, "-c", WRITER, "carol", "5"], env=journal.env, check=True,
                   timeout=60)
    journal.dump()
    crash = subprocess.run([sys.executable, "-c", CRASHER, ME], env=journal.env, timeout=60)
    assert crash.returncode == 9
    assert [i for _w, i in console_rows(tmp_path)] == [0, 1, 2]  # the third is in, unsaved
    subprocess.run([sys.executable, "-c", WRITER, "dave", "2"], env=journal.env, check=True,
                   timeout=60)
    out = ark_ingest(journal)
    assert out.returncode == 0, out.stderr
    rows = console_rows(tmp_path)
    assert [i for w, i in rows if w == "console:carol"] == list(range(5))
    assert [i for w, i in rows if w == "console:dave"] == [0, 1]
    assert verify_dir(tmp_path / "audit").ok


def test_a_second_ingester_stands_aside_while_one_follows(tmp_path: Path, journal) -> None:
    import fcntl

    audit = tmp_path / "audit"
    audit.mkdir()
    fd = os.open(audit / "journal-ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as ark-audit-ingest.service holds it
    try:
        out = ark_ingest(journal)
    finally:
        os.close(fd)
    assert out.returncode == 0 and "takes each console record" in out.stderr


def test_an_unknown_api_user_is_a_configuration_error(journal) -> None:
    out = subprocess.run([sys.executable, "-m", "ark_runtime.cli", "audit", "ingest",
                          "--api-user", "no-such-user-x"], env=journal.env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 78 and "no-such-user-x" in out.stderr
