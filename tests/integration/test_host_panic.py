"""REC_01, issue #17: the one host-side panic (ark_runtime/host/panic.sh through
ark_runtime/host/panic.py), run for real: the flag, SIGKILL of the ARK user's processes,
the report both `invoke panic` and /api/admin/panic give.

This machine has no systemd (systemctl answers "not booted with systemd"), so step 2 (the
units) is proven on the lab (tests/e2e/test_recovery_flow.py); here the ARK user is
`nobody`, which owns no other process on a test machine.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from ark_runtime.host import panic as host_panic

pytestmark = pytest.mark.requirement("REC_01")
USER = "nobody"


def _as(user: str, *argv: str) -> subprocess.Popen:
    u = pwd.getpwnam(user)
    return subprocess.Popen(["setpriv", f"--reuid={u.pw_uid}", f"--regid={u.pw_gid}",
                             "--clear-groups", *argv], start_new_session=True)


@pytest.fixture
def leftovers():
    if os.geteuid() != 0:
        pytest.skip("needs root to start processes as another user")
    if subprocess.run(["pgrep", "-u", USER], capture_output=True).stdout.strip():
        pytest.skip(f"user {USER} already runs processes here: not ours to kill")
    procs = [_as(USER, "sleep", "600") for _ in range(3)]
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)


def test_the_panic_kills_every_process_of_the_ark_user(leftovers, tmp_path: Path) -> None:
    report = host_panic.panic("alice", state_dir=tmp_path / "state", user=USER)
    assert report.remaining == 0 and report.ok
    for p in leftovers:
        assert p.wait(timeout=30) == -9  # SIGKILL, not a polite stop
    assert "killed leftover processes of user nobody" in report.warnings
    assert report.host_ms >= 0
    flag = (tmp_path / "state" / "PANIC").read_text()
    assert flag.startswith("panic by alice at ")
    assert not (tmp_path / "state" / "PANIC.tmp").exists()  # written aside, then renamed
    assert "KILLED 0 unit(s)" in report.summary() and "0 ARK process(es) remaining" \
        in report.summary()


def test_root_is_never_the_target(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the API runs as root only in this test environment")
    report = host_panic.panic("bob", state_dir=tmp_path)  # default user: whoever runs it
    assert "not killing the processes of root (ARK_USER=root)" in report.warnings
    assert report.remaining == 0 and (tmp_path / "PANIC").exists()


def test_the_report_parses_what_the_script_prints() -> None:
    r = host_panic.parse_panic_output(
        "killed ark-api.service\nkilled ark-agent@kyle.service\nwarning: x\nremaining 0\n"
        "elapsed_ms 42\n")
    assert r.as_dict() == {"killed": ["ark-api.service", "ark-agent@kyle.service"],
                           "remaining": 0, "host_ms": 42, "warnings": ["x"]}
