"""invoke verify: the testinfra compliance suite against an inventory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ark_ops.ansible_run import ansible_env
from ark_ops.inventories import REPO_ROOT, resolve_inventory

REPORTS = REPO_ROOT / "reports"


def verify(inventory: str | None = None, limit: str | None = None, disruptive: bool = False,
           keyword: str | None = None, reports_dir: Path = REPORTS, log=print) -> int:
    """Run tests/compliance; returns pytest's exit code (0 only when all passed)."""
    inv = resolve_inventory(inventory, log)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    reports_dir.mkdir(parents=True, exist_ok=True)
    junit = reports_dir / f"compliance-{stamp}.xml"
    markdown = reports_dir / f"compliance-{stamp}.md"
    cmd = [
        sys.executable, "-m", "pytest", str(REPO_ROOT / "tests" / "compliance"),
        "-p", "ark_ops.report", "-p", "no:cacheprovider",
        f"--hosts=ansible://{limit or 'ark'}", f"--ansible-inventory={inv}",
        f"--junitxml={junit}", f"--requirements-report={markdown}",
        "-o", "junit_family=xunit2", "-q",
    ]
    if disruptive:
        cmd.append("--disruptive")
    if keyword:
        cmd += ["-k", keyword]
    rc = subprocess.call(cmd, cwd=REPO_ROOT, env=ansible_env())
    for name, target in (("compliance-latest.md", markdown), ("compliance-latest.xml", junit)):
        link = reports_dir / name
        link.unlink(missing_ok=True)
        if target.exists():
            link.symlink_to(target.name)
    log(f"JUnit: {junit}\nMarkdown: {markdown}")
    return rc
