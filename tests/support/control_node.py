"""A second control node with a real systemd as PID 1, for what only systemd can prove (the
off-host backup timer). This machine runs no systemd, so the control node is a booted nspawn
of the lab's base image: it shares this machine's network (it reaches the lab hosts as the
control node does) and sees this checkout, its venv's interpreter and the lab's SSH key at the
same paths, so `.venv/bin/invoke` runs in it unchanged.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ark_ops.lab.config import LabPaths
from ark_ops.lab.image import ensure_base_image
from ark_ops.paths import REPO_ROOT

NAME = "ark-control"
# It shares the network: nothing of the image may listen (the lab hosts' ports are theirs).
MASKED = ("ssh.service", "ssh.socket", "redis-server.service", "prometheus.service",
          "prometheus-alertmanager.service", "systemd-networkd.service",
          "systemd-resolved.service")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class ControlNode:
    leader: int  # the container's systemd, as this machine sees it

    def run(self, *argv: str, timeout: float = 300, cwd: Path = REPO_ROOT,
            check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["nsenter", f"--target={self.leader}", "--mount", "--uts", "--ipc", "--pid",
               "env", "-i", f"--chdir={cwd}", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8",
               *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"on the control node: {' '.join(argv)} exited "
                                 f"{proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return proc

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _leader(nspawn: subprocess.Popen, deadline: float) -> int:
    """nspawn's child running systemd: the container's PID 1."""
    while time.monotonic() < deadline:
        if nspawn.poll() is not None:
            raise AssertionError(f"the control node's nspawn exited {nspawn.returncode}")
        for task in Path(f"/proc/{nspawn.pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                for pid in (task / "children").read_text().split():
                    with contextlib.suppress(FileNotFoundError):
                        if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                            return int(pid)
        time.sleep(0.5)
    raise AssertionError("the control node's systemd did not start")


def _booted(node: ControlNode, deadline: float) -> None:
    state = ""
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            state = node.run("systemctl", "is-system-running", timeout=30,
                             check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
        time.sleep(1)
    raise AssertionError(f"the control node's systemd did not finish booting ({state!r})")


@contextlib.contextmanager
def control_node(workdir: Path, boot_timeout: float = 180) -> Iterator[ControlNode]:
    paths = LabPaths.default()
    base = ensure_base_image(paths.cache, log=lambda *_: None)
    upper, work, root = (workdir / d for d in ("upper", "work", "root"))
    for d in (upper, work, root):
        d.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base},upperdir={upper},workdir={work}", str(root)], check=True)
    nspawn = None
    try:
        for unit in MASKED:
            link = root / "etc" / "systemd" / "system" / unit
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")
        binds = [REPO_ROOT, paths.state / "ssh"]
        interpreter = Path(sys.base_prefix)  # the venv's base, unless it is Debian's own
        if not interpreter.is_relative_to("/usr"):
            binds.append(interpreter)
        log = open(workdir / "console.log", "wb")  # noqa: SIM115 - closed below
        nspawn = subprocess.Popen(
            ["systemd-nspawn", f"--directory={root}", f"--machine={NAME}",
             f"--hostname={NAME}", "--boot", "--register=no", "--keep-unit",
             "--console=read-only", "--link-journal=no",
             *(f"--bind={p}" for p in binds)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + boot_timeout
        node = ControlNode(_leader(nspawn, deadline))
        _booted(node, deadline)
        yield node
    finally:
        if nspawn is not None:
            if nspawn.poll() is None:
                nspawn.send_signal(signal.SIGTERM)  # nspawn powers the guest off cleanly
                try:
                    nspawn.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    os.killpg(nspawn.pid, signal.SIGKILL)
                    nspawn.wait(timeout=30)
            log.close()
        subprocess.run(["umount", str(root)], check=False)
