"""One lab host: an overlay over the base image, its own keys, a supervised nspawn."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ark_ops.errors import OpsError
from ark_ops.lab import operator
from ark_ops.lab.config import HOST_PREFIX, LabHost, LabPaths, gateway_address
from ark_ops.lab.image import DEFAULT_RELEASE
from ark_ops.proc import run


@dataclass(frozen=True)
class HostLayout:
    host: LabHost
    dir: Path

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def pidfile(self) -> Path:
        return self.dir / "supervisor.pid"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    @property
    def release_file(self) -> Path:
        return self.dir / "release"


def layout(paths: LabPaths, host: LabHost) -> HostLayout:
    return HostLayout(host, paths.host_dir(host.name))


def mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def lab_mounts(state: Path) -> list[str]:
    prefix = str(state) + "/"
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


def release_of(lay: HostLayout) -> str:
    """The Debian release the host's root was made from (hosts made before releases were
    recorded are bookworm)."""
    try:
        return lay.release_file.read_text().strip() or DEFAULT_RELEASE
    except FileNotFoundError:
        return DEFAULT_RELEASE


def ensure_root(lay: HostLayout, base: Path, authorized_key: str, user: str = "root",
                release: str = DEFAULT_RELEASE) -> None:
    """Mount the overlay and give the host its identity and its SSH operator (`user`)."""
    for d in (lay.upper, lay.work, lay.root):
        d.mkdir(parents=True, exist_ok=True)
    lay.release_file.write_text(release + "\n")
    if not mounted(lay.root):
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={base},upperdir={lay.upper},workdir={lay.work}", str(lay.root)])
    root = lay.root
    (root / "etc" / "hostname").write_text(lay.host.name + "\n")
    (root / "etc" / "hosts").write_text(
        f"127.0.0.1 localhost\n{lay.host.address} {lay.host.name}\n"
    )
    if not (root / "etc" / "ssh" / "ssh_host_ed25519_key").exists():
        run(["ssh-keygen", "-A", "-f", str(root)])
    if user == "root":
        operator.make_root_operator(root, authorized_key)
    else:
        operator.make_operator(root, user, authorized_key)
    operator.exempt_control_node(root, gateway_address())


def host_public_key(lay: HostLayout) -> str:
    return (lay.root / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()[:2]


def supervisor_pid(lay: HostLayout) -> int | None:
    try:
        pid = int(lay.pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):  # gone, or exiting as we read
        return None
    # Guard against pid reuse: it must be our supervisor for this host.
    return pid if b"ark_ops.lab.supervisor" in cmdline and lay.host.name.encode() in cmdline \
        else None


def nspawn_pids(name: str | None = None) -> list[int]:
    """Every systemd-nspawn process for this machine (or, without a name, for any lab
    machine), supervised or stray: one pass over /proc."""
    marker = f"--machine={name}".encode() if name else f"--machine={HOST_PREFIX}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if not cmdline or not cmdline[0].endswith(b"systemd-nspawn"):
            continue
        if any(arg == marker if name else arg.startswith(marker) for arg in cmdline):
            pids.append(int(entry.name))
    return pids


def console_tail(lay: HostLayout, lines: int = 15) -> str:
    """The last lines the guest's console (and nspawn's own complaints) wrote."""
    try:
        text = lay.console_log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no console.log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def start(lay: HostLayout) -> None:
    if supervisor_pid(lay):
        return
    with open(lay.console_log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ark_ops.lab.supervisor", lay.host.name, str(lay.root),
             str(lay.console_log)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,  # outlives the invoke process that started it
            cwd=Path(__file__).resolve().parents[2],
        )
    lay.pidfile.write_text(f"{proc.pid}\n")


def stop(lay: HostLayout, timeout: float = 60) -> None:
    """Shut the guest down cleanly; SIGKILL what is still there after `timeout`."""
    pid = supervisor_pid(lay)
    if pid:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _guest_running(lay):
        for stray in nspawn_pids(lay.host.name) if not supervisor_pid(lay) else []:
            _signal(stray, signal.SIGTERM)
        time.sleep(0.2)
    for leftover in [supervisor_pid(lay), *nspawn_pids(lay.host.name)]:
        if leftover:
            _signal(leftover, signal.SIGKILL)
    # SIGKILL is delivered asynchronously; unmounting before the process is reaped
    # fails with "target is busy".
    reap_deadline = time.monotonic() + 10
    while time.monotonic() < reap_deadline and _guest_running(lay):
        time.sleep(0.1)
    lay.pidfile.unlink(missing_ok=True)


def _guest_running(lay: HostLayout) -> bool:
    return bool(supervisor_pid(lay) or nspawn_pids(lay.host.name))


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def unmount(path: Path) -> None:
    if not mounted(path):
        return
    result = run(["umount", str(path)], check=False)
    if result.returncode != 0:
        raise OpsError(f"could not unmount {path}: {result.stderr.strip()}; "
                       f"find users with `fuser -vm {path}`")
