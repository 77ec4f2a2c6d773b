"""invoke verify: the testinfra compliance suite against an inventory."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ark_ops.ansible_run import ansible_env
from ark_ops.inventories import REPO_ROOT, resolve_inventory
from ark_ops.redact import Redactor, inventory_secrets
from ark_ops.report_html import write_report

REPORTS = REPO_ROOT / "reports"
HISTORY_NAME = "compliance-history.json"  # the trend: one entry per run, newest last


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def verify(inventory: str | None = None, limit: str | None = None, disruptive: bool = False,
           keyword: str | None = None, reports_dir: Path = REPORTS, log=print,
           echo: Callable[[str], None] | None = None) -> int:
    """Run tests/compliance; returns pytest's exit code (0 only when all passed).

    The suite's own plugin (ark_ops.report) masks secrets in what it reports; its console
    output also passes through a mask of the inventory's secrets here, line by line, so
    nothing pytest prints outside a test report (an internal error) can carry one either.
    """
    inv = resolve_inventory(inventory, log)
    echo = echo or _write_stdout
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
    redact = Redactor(inventory_secrets(Path(inv)))
    with subprocess.Popen(cmd, cwd=REPO_ROOT, env=ansible_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        for line in proc.stdout:
            echo(redact(line))
    rc = proc.returncode
    html = write_html(junit, reports_dir / f"compliance-{stamp}.html", inv, redact, log)
    for name, target in (("compliance-latest.md", markdown), ("compliance-latest.xml", junit),
                         ("compliance-latest.html", html)):
        link = reports_dir / name
        link.unlink(missing_ok=True)
        if target.exists():
            link.symlink_to(target.name)
    log(f"JUnit: {junit}\nMarkdown: {markdown}\nHTML: {html}")
    return rc


def write_html(junit: Path, out: Path, inventory: Path, redact: Redactor, log) -> Path:
    """The HTML report and its history entry; a run that wrote no JUnit (pytest could not
    start) has nothing to show, and that is said rather than raised."""
    if not junit.exists():
        log(f"no JUnit was written, so no HTML report ({junit})")
        return out
    return write_report(junit, out, inventory=inventory,
                        history_path=out.parent / HISTORY_NAME, repo=REPO_ROOT,
                        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), redact=redact)
