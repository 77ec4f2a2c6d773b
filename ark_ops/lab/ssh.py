"""SSH into lab hosts with the lab's own key and pinned host keys, as the lab's SSH user.

A lab brought up with `--user deploy` refuses root logins: commands then run as root
through `sudo -n`, as the whole command line the remote shell would have run (so
`a && b` is root for both parts, exactly as it was when logging in as root).
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess

from ark_ops.lab.config import LabHost, LabPaths
from ark_ops.paths import ANSIBLE_CONTROL_DIR


def lab_user(paths: LabPaths) -> str:
    """The SSH user of the running lab: root unless `lab.up --user NAME` said otherwise."""
    try:
        return paths.ssh_user_file.read_text().strip() or "root"
    except FileNotFoundError:
        return "root"


def ssh_argv(paths: LabPaths, host: LabHost, *command: str, batch: bool = True,
             as_root: bool = True) -> list[str]:
    user = lab_user(paths)
    argv = [
        "ssh", "-i", str(paths.ssh_key),
        "-o", f"UserKnownHostsFile={paths.known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "ConnectTimeout=3",
        "-o", "LogLevel=ERROR",
    ]
    if batch:
        argv += ["-o", "BatchMode=yes"]
    if command and as_root and user != "root":
        command = ("sudo", "-n", "--", "sh", "-c", shlex.quote(" ".join(command)))
    return argv + [f"{user}@{host.address}", *command]


def master_exit_argv(paths: LabPaths, host: LabHost) -> list[str]:
    """`ssh -O exit` for the master Ansible keeps to `host` (the same %C: user, address, port)."""
    return ["ssh", "-O", "exit", "-o", f"ControlPath={ANSIBLE_CONTROL_DIR}/%C",
            "-o", "LogLevel=QUIET", f"{lab_user(paths)}@{host.address}"]


def close_master(paths: LabPaths, host: LabHost) -> None:
    """Close the ssh master to a host about to go away. A master outlives its host by
    ControlPersist; a host re-created at the same address within that time would be reached
    through the old host's master, whose peer is gone, and hang. No master: nothing to do."""
    # A master too wedged to answer in 10 s is left to its keepalives (inventory.py).
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(master_exit_argv(paths, host), capture_output=True, timeout=10,
                       check=False, stdin=subprocess.DEVNULL)
