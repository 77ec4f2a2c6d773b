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


def netns_pids(host: LabHost) -> list[int]:
    """Every process in the host's network namespace: its guest, also one that outlived its
    nspawn (an orphan keeps the namespace, its address and its ports, and a guest booted
    again into the same namespace would share them with it)."""
    try:
        ns = os.stat(f"/run/netns/{host.netns}")
    except FileNotFoundError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            mine = os.stat(entry / "ns" / "net")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if (mine.st_dev, mine.st_ino) == (ns.st_dev, ns.st_ino):
            found.append(int(entry.name))
    return found


def orphaned_guests() -> dict[int, str]:
    """{pid: host name} of every lab guest's init whose nspawn is gone: a guest that
    outlived a stop (its SIGTERM began a shutdown that ran past the grace) keeps running,
    with its agents and Redis, after its namespace's name is deleted. One pass over /proc;
    a guest's init is the process whose parent is not in its PID namespace."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = _ppid(entry)
            if Path(f"/proc/{ppid}/cmdline").read_bytes().split(b"\0")[0].endswith(
                    b"systemd-nspawn"):
                continue  # a running guest's init
            if os.readlink(entry / "ns" / "pid") == _pid_ns(ppid):
                continue  # not the first process of a PID namespace
            name = (entry / "root" / "etc" / "hostname").read_text().strip()
        except (OSError, ValueError, IndexError):
            continue
        if name.startswith(HOST_PREFIX):
            found[int(entry.name)] = name
    return found


def _pid_ns(pid: int) -> str | None:
    """The PID namespace of `pid`, None when it may not be read (this machine's own init)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except PermissionError:
        return None


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
    # No supervisor: whatever still runs in the host's namespace is a guest that outlived
    # its nspawn. Booted next to it, the new guest would share its address and ports.
    stale = netns_pids(lay.host)
    for pid in stale:
        _signal(pid, signal.SIGKILL)
    reap_deadline = time.monotonic() + 10
    while stale and time.monotonic() < reap_deadline and netns_pids(lay.host):
        time.sleep(0.1)
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
    for leftover in [supervisor_pid(lay), *nspawn_pids(lay.host.name), *netns_pids(lay.host)]:
        if leftover:
            _signal(leftover, signal.SIGKILL)
    # SIGKILL is delivered asynchronously; unmounting before the process is reaped
    # fails with "target is busy".
    reap_deadline = time.monotonic() + 10
    while time.monotonic() < reap_deadline and _guest_running(lay):
        time.sleep(0.1)
    lay.pidfile.unlink(missing_ok=True)


def power_off(lay: HostLayout) -> None:
    """Pull the plug: the guest's init is SIGKILLed, and with it (the kernel ends a PID
    namespace with its init) every process of the guest at once; no shutdown runs. Not
    stop(timeout=0): its SIGTERM starts a clean shutdown inside the guest, and a SIGKILLed
    nspawn can leave that guest running on as an orphan (seen in a failover drill: a host
    "powered off" still answered minutes later). lab.up boots it again."""
    supervisor = supervisor_pid(lay)
    if supervisor:  # first, so that nothing is passed on or started again
        _signal(supervisor, signal.SIGKILL)
    nspawns = nspawn_pids(lay.host.name)
    for pid in nspawns:
        for init in _children(pid):
            _signal(init, signal.SIGKILL)
    for pid in [*nspawns, *netns_pids(lay.host)]:  # and any guest an earlier stop orphaned
        _signal(pid, signal.SIGKILL)
    reap_deadline = time.monotonic() + 10
    while time.monotonic() < reap_deadline and _guest_running(lay):
        time.sleep(0.1)
    lay.pidfile.unlink(missing_ok=True)


def _children(pid: int) -> list[int]:
    """The direct children of `pid` (nspawn's: the guest's init). One pass over /proc:
    /proc/PID/task/TID/children needs CONFIG_PROC_CHILDREN, which not every kernel has."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if _ppid(entry) == pid:
                found.append(int(entry.name))
    return found


def _ppid(proc_dir: Path) -> int:
    """A /proc/PID directory's parent pid (after the command name, which may hold spaces)."""
    return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])


def _guest_running(lay: HostLayout) -> bool:
    return bool(supervisor_pid(lay) or nspawn_pids(lay.host.name) or netns_pids(lay.host))


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
