"""SSH into lab hosts with the lab's own key and pinned host keys."""

from __future__ import annotations

from ark_ops.lab.config import LabHost, LabPaths


def ssh_argv(paths: LabPaths, host: LabHost, *command: str, batch: bool = True) -> list[str]:
    argv = [
        "ssh", "-i", str(paths.ssh_key),
        "-o", f"UserKnownHostsFile={paths.known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "ConnectTimeout=3",
        "-o", "LogLevel=ERROR",
    ]
    if batch:
        argv += ["-o", "BatchMode=yes"]
    return argv + [f"root@{host.address}", *command]
