"""A shell on a lab host, patient polling and a deployed lab: what every end-to-end module
needs."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ark_ops.deploy import run as deploy_mod
from ark_ops.lab import lab
from ark_ops.lab.config import LabHost, LabPaths
from ark_ops.lab.ssh import ssh_argv

T = TypeVar("T")


def on(host: str | LabHost, *cmd: str, check: bool = False, stdin: str | None = None,
       as_root: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `cmd` on a lab host over its ssh master. ssh joins its argv into one remote command
    line, so a single string with shell syntax is the clearest way to pass a script."""
    target = host if isinstance(host, LabHost) else LabHost.parse(host)
    # Never our stdin: ssh makes the stdin it inherits non-blocking and, killed at the
    # timeout, leaves it so - and Ansible then refuses to start anywhere in this session.
    feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    proc = subprocess.run(ssh_argv(LabPaths.default(), target, *cmd, as_root=as_root),
                          capture_output=True, text=True, timeout=timeout, **feed)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def wait_for(predicate: Callable[[], T], timeout: float, what: str,
             interval: float = 0.5) -> T:
    """The predicate's first truthy result, or an AssertionError naming what never came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


CORE_UNITS = ("ark-api.service", "ark-agent@kyle.service", "ark-agent@hrm.service")


def units_active(host: str | LabHost, *units: str, as_root: bool = True) -> bool:
    """Every unit named (by default the API and the pipeline's two ends) is active."""
    units = units or CORE_UNITS
    out = on(host, "systemctl", "is-active", *units, as_root=as_root).stdout.split()
    return out == ["active"] * len(units)


def lab_up(hosts: int, user: str = "deploy", topology: str = "all", log=print,
           release: str | None = None):
    """The lab in the mode a module needs: `hosts` hosts reached as `user`, laid out as
    `topology`. A lab up in another mode (the operator's, after `./ops deploy`) is taken
    down first rather than asking anyone for a manual step."""
    return lab.up(hosts=hosts, user=user, topology=topology, log=log, release=release,
                  replace=True)


@contextmanager
def deployed_lab(hosts: int, user: str = "deploy", release: str | None = None,
                 before_deploy: Callable[[], object] | None = None) -> Iterator[list[str]]:
    """`hosts` lab hosts reached as `user` on Debian `release` (e.g. "bookworm,trixie"), ARK
    deployed on all of them (after `before_deploy`, e.g. writing inventory vars); the lab is
    taken down again on the way out."""
    lab_up(hosts, user, release=release)
    try:
        if before_deploy:
            before_deploy()
        deploy_mod.deploy(echo=False)
        yield [LabHost(i).name for i in range(1, hosts + 1)]
    finally:
        lab.down()
