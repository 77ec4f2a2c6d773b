"""lab.up's boot wait: a guest whose nspawn exits at once gets one more start, and what its
console said reaches the operator (the CI failure that prompted it left no trace)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ark_ops.lab import host as hostmod
from ark_ops.lab import lab
from ark_ops.lab.config import LabHost, LabPaths


def paths_in(tmp_path) -> LabPaths:
    return LabPaths(state=tmp_path / "s", cache=tmp_path / "c", inventory=tmp_path / "i")


def status(name: str, state: str) -> lab.HostStatus:
    return lab.HostStatus(name, "10.0.0.1", not state.startswith(lab.NSPAWN_EXITED), state)


def test_an_exited_guest_is_started_once_more_and_its_console_is_logged(tmp_path, monkeypatch):
    paths = paths_in(tmp_path)
    hosts = [LabHost(1), LabHost(2)]
    lay = hostmod.layout(paths, hosts[1])
    lay.console_log.parent.mkdir(parents=True)
    lay.console_log.write_text("booting\nDirectory tree is currently busy.\n")
    rounds = iter([
        [status("ark-lab-1", "running"), status("ark-lab-2", "nspawn exited; see console.log")],
        [status("ark-lab-2", "running")],
    ])
    waited, started, logged = [], [], []
    monkeypatch.setattr(lab, "wait_until_booted",
                        lambda p, hs: (waited.append([h.name for h in hs]), next(rounds))[1])
    monkeypatch.setattr(hostmod, "start", lambda lay: started.append(lay.host.name))
    result = lab.boot(paths, hosts, log=logged.append)
    assert [s.ok for s in result] == [True, True]
    assert waited == [["ark-lab-1", "ark-lab-2"], ["ark-lab-2"]]  # only the exited one again
    assert started == ["ark-lab-2"]
    assert "ark-lab-2" in logged[0] and "currently busy" in logged[0]


def test_a_guest_that_exits_twice_stays_failed(tmp_path, monkeypatch):
    exited = status("ark-lab-1", "nspawn exited; see console.log")
    monkeypatch.setattr(lab, "wait_until_booted", lambda p, hs: [exited])
    monkeypatch.setattr(hostmod, "start", lambda lay: None)
    [result] = lab.boot(paths_in(tmp_path), [LabHost(1)], log=lambda _: None)
    assert not result.ok


def test_a_host_that_is_only_slow_is_not_restarted(tmp_path, monkeypatch):
    slow = status("ark-lab-1", "unreachable (ssh timed out)")
    monkeypatch.setattr(lab, "wait_until_booted", lambda p, hs: [slow])
    monkeypatch.setattr(hostmod, "start", lambda lay: (_ for _ in ()).throw(AssertionError))
    assert lab.boot(paths_in(tmp_path), [LabHost(1)], log=lambda _: None) == [slow]


def test_console_tail_without_a_log(tmp_path):
    assert hostmod.console_tail(hostmod.layout(paths_in(tmp_path), LabHost(1))) \
        == "(no console.log)"


def test_a_degraded_host_with_its_failed_units_named_is_up():
    """The named failed units are detail: lab.up once refused every degraded host this way."""
    assert status("ark-lab-1", "degraded (failed units: )").ok
    assert status("ark-lab-1", "degraded (failed units: foo.service)").ok
    assert not status("ark-lab-1", "starting").ok
    assert not status("ark-lab-1", "unreachable (ssh timed out)").ok


def _answers(monkeypatch, *answers):
    """subprocess.run in lab.py gives these in turn: a CompletedProcess, or None for a
    command that timed out."""
    calls = []

    def run(argv, **kwargs):
        calls.append(kwargs["timeout"])
        answer = answers[len(calls) - 1]
        if answer is None:
            raise lab.subprocess.TimeoutExpired(argv, kwargs["timeout"])
        return answer
    monkeypatch.setattr(lab.subprocess, "run", run)
    monkeypatch.setattr(lab.time, "sleep", lambda s: None)
    return calls


def done(rc: int, out: str = "", err: str = ""):
    return lab.subprocess.CompletedProcess([], rc, out, err)


def test_a_slow_first_login_is_asked_again_not_failed(monkeypatch):
    # CI: a just-booted host's `sudo -n id -un` over ssh took more than 30 s once.
    calls = _answers(monkeypatch, None, done(255, err="Connection refused"), done(0, "root\n"))
    assert lab._ssh_answer(LabHost(3), ["ssh"]).stdout == "root\n"
    assert len(calls) == 3


def test_a_refused_root_login_is_an_answer_not_a_retry(monkeypatch):
    calls = _answers(monkeypatch, done(255, err="root@x: Permission denied (publickey)."))
    assert lab._ssh_answer(LabHost(1), ["ssh"]).returncode == 255
    assert len(calls) == 1


def test_a_host_that_never_answers_is_named_within_the_bound(monkeypatch):
    clock = iter(range(0, 10_000, 70))
    monkeypatch.setattr(lab.time, "monotonic", lambda: next(clock))
    _answers(monkeypatch, *[None] * 10)
    try:
        lab._ssh_answer(LabHost(3), ["ssh"])
    except lab.OpsError as e:
        assert str(e).startswith("ark-lab-3: ssh did not answer within 180s")
    else:
        raise AssertionError("no error")


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for whoever adopted it to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_power_off_kills_the_guests_init_and_its_nspawn_at_once(tmp_path):
    """A stand-in for nspawn (its argv[0] and --machine as nspawn's, found the same way) with
    one child in the guest init's place: both are gone after power_off, with no SIGTERM
    first (the stand-in ignores it, as a guest mid-shutdown outlives it)."""
    host = LabHost(8)
    if hostmod.nspawn_pids(host.name):
        pytest.skip(f"a real {host.name} is running here")
    lay = hostmod.layout(paths_in(tmp_path), host)
    lay.pidfile.parent.mkdir(parents=True)
    lay.pidfile.write_text("1\n")  # not a supervisor of this host: passed over
    stand_in = subprocess.Popen(
        ["bash", "-c", 'exec -a systemd-nspawn bash -c \'trap "" TERM; sleep 300 & echo $!; '
         f'wait\' stand-in --machine={host.name}'], stdout=subprocess.PIPE, text=True)
    init = int(stand_in.stdout.readline())
    try:
        # Until the forked child has exec'd sleep, it still looks like the stand-in.
        deadline = time.monotonic() + 10
        while Path(f"/proc/{init}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
            assert time.monotonic() < deadline, "the stand-in's child never became sleep"
            time.sleep(0.01)
        assert hostmod.nspawn_pids(host.name) == [stand_in.pid]
        hostmod.power_off(lay)
        stand_in.wait(10)  # SIGKILLed, or ended by its child's death first, as nspawn is
        assert not _alive(init)
        assert not lay.pidfile.exists()
    finally:
        stand_in.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, signal.SIGKILL)
