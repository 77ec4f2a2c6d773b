"""INFRA_02: flock-based single instance; the kernel releases the lock on any exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ark_runtime.lock import EXIT_LOCKED, AlreadyRunning, ComponentLock, run_dir

pytestmark = pytest.mark.requirement("INFRA_02")
REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from pathlib import Path
from ark_runtime.lock import ComponentLock
ComponentLock("joey", Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_second_holder_is_refused_with_the_holders_pid(tmp_path) -> None:
    with ComponentLock("joey", tmp_path):
        with pytest.raises(AlreadyRunning) as info:
            ComponentLock("joey", tmp_path).acquire()
        assert f"pid {os.getpid()}" in str(info.value)
        assert "already running" in str(info.value)
        ComponentLock("kenny", tmp_path).acquire().release()  # other components are free
    ComponentLock("joey", tmp_path).acquire().release()  # released on exit of the block


def test_sigkilled_holder_leaves_no_stale_lock(tmp_path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, env={**os.environ,
                                                                    "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(AlreadyRunning, match=f"pid {proc.pid}"):
            ComponentLock("joey", tmp_path).acquire()
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
    finally:
        proc.kill()
    # The pid file content is stale now, but the lock is free: the kernel dropped it.
    assert (tmp_path / "joey.lock").read_text().strip() == str(proc.pid)
    deadline = time.monotonic() + 5
    ComponentLock("joey", tmp_path).acquire().release()
    assert time.monotonic() < deadline


def test_exit_code_and_run_dir() -> None:
    assert EXIT_LOCKED == 75  # EX_TEMPFAIL
    assert run_dir({"ARK_RUN_DIR": "/x/y"}) == Path("/x/y")
