"""The release a rolling upgrade starts from: the last one that landed before this work.

Both the lab's rolling-upgrade test and the wire-compatibility test read the previous
release's own code from git, so "the previous release reads what this one writes" is checked
against that release, not against a copy of its rules.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ark_ops.paths import REPO_ROOT

PREVIOUS_RELEASE = "53e9ff08388520e065b198505737b7b2f648ffce"
# The releases the wire-compatibility test checks this one against: the lab's rolling-upgrade
# start above, and the last one that landed (it has the executor, not `position.marked`).
LAST_LANDED_RELEASE = "1c9fc3ab61c64eeff000435f277a415b8351e907"
RELEASES = (PREVIOUS_RELEASE, LAST_LANDED_RELEASE)


def extract(commit: str, dest: Path, *paths: str) -> Path:
    """`paths` (default: the whole tree) of `commit`, written under `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", commit, *paths], cwd=REPO_ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest
