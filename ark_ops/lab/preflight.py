"""Checks on the control node before a job changes anything."""

from __future__ import annotations

import os
import shutil

from ark_ops.errors import PreflightError

# tool -> Debian package that provides it
LAB_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "mount": "mount",
}


def require_root(job: str) -> None:
    if os.geteuid() != 0:
        raise PreflightError(
            f"{job} needs root (it creates mounts, network namespaces and containers): "
            f"run it again as root, e.g. `sudo -E ./ops {job}`."
        )


def require_tools(tools: dict[str, str]) -> None:
    missing = {tool: pkg for tool, pkg in tools.items() if shutil.which(tool) is None}
    if missing:
        pkgs = " ".join(sorted(set(missing.values())))
        raise PreflightError(
            f"missing tools: {', '.join(sorted(missing))}; "
            f"install them with `apt-get install -y {pkgs}` (./ops does this for you)."
        )
