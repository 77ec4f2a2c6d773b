"""Keeps one lab host's systemd-nspawn running, the way systemd-nspawn@.service does.

A reboot inside the guest makes nspawn exit with status 133; we start it again
(RestartForceExitStatus=133 in systemd's own unit). Any other exit ends the
supervisor. SIGTERM is passed on to nspawn, which shuts the guest down cleanly.

Run detached by `lab.up`: python -m ark_ops.lab.supervisor NAME ROOT LOG
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

REBOOT_EXIT_STATUS = 133
STOP_TIMEOUT = 60


def nspawn_command(name: str, root: str) -> list[str]:
    return [
        "systemd-nspawn",
        f"--directory={root}",
        f"--machine={name}",
        f"--hostname={name}",
        "--boot",
        # The control node has no systemd to register with or to own our scope.
        "--register=no",
        "--keep-unit",
        f"--network-namespace-path=/run/netns/{name}",
        "--console=read-only",
        "--link-journal=no",
    ]


def main(name: str, root: str, log_path: str) -> int:
    child: subprocess.Popen | None = None
    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    with open(log_path, "ab", buffering=0) as log:
        while True:
            log.write(f"\n== {time.strftime('%F %T')} starting {name}\n".encode())
            child = subprocess.Popen(
                nspawn_command(name, root), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )
            try:
                status = child.wait()
            except KeyboardInterrupt:
                status = child.wait()
            if stopping:
                return 0
            log.write(f"== {time.strftime('%F %T')} nspawn exited with {status}\n".encode())
            if status != REBOOT_EXIT_STATUS:
                return status
            time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
