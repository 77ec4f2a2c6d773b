"""sd_notify(3) client: tells systemd we are ready, alive, or stopping.

The protocol is one datagram to $NOTIFY_SOCKET; outside systemd the socket is
unset and every call is a no-op, so the same code runs under tests and on hosts.
The variables are systemd's, not ARK's (never in an env file, not in the env schema); they
are read through `ark_runtime.settings.systemd_var`, the one reader of the environment.
"""

from __future__ import annotations

import os
import socket

from ark_runtime.settings import systemd_var


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to systemd. Returns False when not supervised."""
    address = systemd_var("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of WatchdogSec), or None when disabled."""
    usec = systemd_var("WATCHDOG_USEC")
    pid = systemd_var("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


def parse_show(text: str) -> list[dict[str, str]]:
    """`systemctl show` output: one KEY=VALUE block per unit, blocks split by a blank line
    (a value may itself contain "="). The console and the metrics exporter both read it."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, _, value = line.partition("=")
        current[key] = value
    if current:
        blocks.append(current)
    return blocks
