"""The deploy lock each host holds (ark_ops/deploy/host_lock.py), run here with the host's own
shell and util-linux flock on a scratch lock file: taken, refused with the holder's name
(exit 75), released when the holder's stdin closes or its process dies."""

from __future__ import annotations

import subprocess

from ark_ops.deploy.host_lock import HELD, TAKEN, lock_script


def start(lock, holder: str) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", lock_script(holder, str(lock))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_a_second_holder_is_refused_with_the_first_ones_name_until_it_lets_go(tmp_path):
    lock = tmp_path / "ark-deploy.lock"
    first = start(lock, "ops@laptop:/home/ops/ark-ops pid 1")
    assert first.stdout.readline().strip() == TAKEN
    second = subprocess.run(["sh", "-c", lock_script("ci@runner:/src pid 2", str(lock))],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            timeout=30)
    assert second.returncode == 75
    assert second.stdout.startswith(HELD) and "ops@laptop:/home/ops/ark-ops" in second.stdout
    first.stdin.close()  # the deploy ended
    assert first.wait(timeout=30) == 0
    third = start(lock, "ci@runner:/src pid 3")
    assert third.stdout.readline().strip() == TAKEN
    third.kill()  # a control node that dies mid-deploy leaves no stale lock
    third.wait(timeout=30)
    fourth = start(lock, "ci@runner:/src pid 4")
    assert fourth.stdout.readline().strip() == TAKEN
    fourth.stdin.close()
    fourth.wait(timeout=30)


def test_the_holder_text_is_quoted_not_run(tmp_path):
    lock = tmp_path / "ark-deploy.lock"
    proc = start(lock, "x'; touch pwned; echo '")
    assert proc.stdout.readline().strip() == TAKEN
    proc.stdin.close()
    proc.wait(timeout=30)
    assert not (tmp_path / "pwned").exists() and "touch pwned" in lock.read_text()


def test_an_unreachable_host_is_reported_not_locked(tmp_path):
    """ssh's own failure (255) is the host being unreachable: the deploy goes on for the
    others and Ansible reports this one UNREACHABLE, as it did before the host lock."""
    import pytest

    from ark_ops.deploy.host_lock import HostLock, HostUnreachable
    from ark_ops.fleet.hostaccess import Become
    from ark_ops.fleet.ssh import FleetHost

    known = tmp_path / "known_hosts"
    known.write_text("")
    host = FleetHost(name="gone", address="127.0.0.1", port=9, user="nobody",
                     known_hosts=str(known), become=Become())
    lock = HostLock(host, "test")
    with pytest.raises(HostUnreachable, match="gone: not reachable over ssh"):
        lock.wait_taken(timeout=30)
