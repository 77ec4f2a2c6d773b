"""The lab end-to-end modules start from a lab of their own making.

`./ops deploy` leaves the operator's lab up (root SSH, ARK deployed); the modules here need
other modes (`--user deploy`, split topology, a fresh host). So the session takes whatever
lab is up down once at the start, and every module brings it up in the mode it needs
(tests/support/lab_shell.lab_up) — never asking for a manual `invoke lab.down`.
"""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session", autouse=True)
def _start_from_no_lab():
    if os.geteuid() != 0:
        yield  # the lab modules skip themselves without root
        return
    from ark_ops.lab import lab
    from ark_ops.lab.config import LabPaths
    from ark_ops.lab.preflight import LAB_TOOLS

    tools_here = all(shutil.which(tool) for tool in LAB_TOOLS)
    if tools_here and lab.existing_hosts(LabPaths.default()):
        lab.down(log=lambda line: print(f"e2e: the lab was up; {line}"))
    yield
