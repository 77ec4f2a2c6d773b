"""INFRA_02: one deploy per inventory, held by the kernel, never stale after a crash."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from ark_ops.errors import LockedError
from ark_ops.inventories import exclusive

pytestmark = pytest.mark.requirement("INFRA_02")

HOLDER = """
import sys, time
from pathlib import Path
from ark_ops.inventories import exclusive
with exclusive(Path(sys.argv[1]), "deploy"):
    print("locked", flush=True)
    time.sleep(60)
"""


def hold_in_child(lock_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_holder_is_refused_with_the_holders_pid(tmp_path):
    lock = tmp_path / ".deploy.lock"
    proc = hold_in_child(lock)
    try:
        with pytest.raises(LockedError, match=f"pid {proc.pid}") as err, \
                exclusive(lock, "deploy"):
            pass
        assert err.value.exit_code == 75
    finally:
        proc.kill()
        proc.wait()


def test_a_crashed_holder_leaves_no_stale_lock(tmp_path):
    lock = tmp_path / ".deploy.lock"
    proc = hold_in_child(lock)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    with exclusive(lock, "deploy"):
        assert lock.exists()
    assert time.monotonic() - started < 1


def test_lock_is_reentrant_after_release(tmp_path):
    lock = tmp_path / ".deploy.lock"
    with exclusive(lock, "deploy"):
        pass
    with exclusive(lock, "deploy"):
        pass


HOLDER_AS = """
import sys, time
from pathlib import Path
from ark_ops.inventories import exclusive
with exclusive(Path(sys.argv[1]), sys.argv[2]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_the_refusal_names_what_holds_the_inventory(tmp_path):
    lock = tmp_path / ".deploy.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER_AS, str(lock), "secrets.rotate"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match="another secrets.rotate is running on this "
                                              f"inventory \\(secrets.rotate pid {proc.pid} "), \
                exclusive(lock, "deploy"):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_a_rotation_holds_the_inventorys_deploy_lock(tmp_path, monkeypatch):
    from ark_ops.fleet import rotate
    from ark_ops.inventories import LOCK_NAME

    (tmp_path / "hosts.yml").write_text("all: {}\n")
    monkeypatch.setattr(rotate, "resolve_inventory", lambda *a, **k: tmp_path / "hosts.yml")
    seen = []
    monkeypatch.setattr(rotate, "_rotate",
                        lambda *a: seen.append((tmp_path / LOCK_NAME).read_text()) or [])
    assert rotate.rotate("snapshot-key", inventory=str(tmp_path)) == []
    assert seen and seen[0].startswith("secrets.rotate pid "), seen
    # ... and a deploy is refused meanwhile: the same lock.
    with exclusive(tmp_path / LOCK_NAME, "deploy"), \
            pytest.raises(LockedError, match="another deploy is running"):
        rotate.rotate("snapshot-key", inventory=str(tmp_path))
