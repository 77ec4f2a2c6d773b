"""`.venv/bin/ark` on the control node: this checkout's `ark` CLI (LAUNCH.md runs
`.venv/bin/ark api hash-password` there). `./ops` writes it after syncing the venv.

A launcher rather than `pip install -e .`: hatchling's editable install needs a package the
lock does not pin, and a copy installed into the venv would go stale with every change to
the checkout; the launcher always runs the checkout's own code.

    python -m ark_ops.ark_launcher VENV
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ark_ops.paths import REPO_ROOT


def launcher_text(venv: Path, checkout: Path = REPO_ROOT) -> str:
    return (
        "#!/bin/sh\n"
        f"# Written by ./ops (ark_ops/ark_launcher.py): the ark CLI of {checkout}\n"
        f'PYTHONPATH="{checkout}${{PYTHONPATH:+:$PYTHONPATH}}" '
        f'exec "{venv}/bin/python" -m ark_runtime.cli "$@"\n'
    )


def write(venv: Path, checkout: Path = REPO_ROOT) -> bool:
    """Write VENV/bin/ark when it is missing or different; True when it changed."""
    venv = venv.absolute()
    target = venv / "bin" / "ark"
    text = launcher_text(venv, checkout)
    if target.is_file() and target.read_text() == text:
        return False
    tmp = target.with_name("ark.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, target)
    return True


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m ark_ops.ark_launcher VENV")
    write(Path(sys.argv[1]))
