"""A checkout of another commit (the baseline) to time side by side with this tree.

The benchmarks run the baseline's own code (roles, ansible.cfg, compliance suite) against
the same lab and inventory, in a child process with the baseline tree as its REPO_ROOT.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """`git archive` of `ref` in a temporary directory (no worktree, no git metadata), with
    this tree's venv (the baseline's own lock must match it for the runtime's closure) and
    this tree's README.md."""
    with tempfile.TemporaryDirectory(prefix="ark-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", ref],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        (tree / ".venv").symlink_to((REPO / ".venv").resolve())
        # README.md is the runtime wheel's long description: a README edit alone would give
        # the baseline another wheel, so another venv to build and restart on the host.
        (tree / "README.md").write_bytes((REPO / "README.md").read_bytes())
        yield tree


# Runs in the child: the tree's own ark_ops, timed there so interpreter start-up is left out
# the same way for both trees.
_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from ark_ops.deploy import run as deploy
from ark_ops.verify import run as verify
kind, inventory = sys.argv[2], sys.argv[3]
t0 = time.monotonic()
if kind == "deploy":
    out = deploy.deploy(inventory=inventory, echo=False, log=lambda *a: None).changed
else:
    out = verify.verify(inventory=inventory, keyword="not disruptive", reports_dir=__import__(
        "pathlib").Path(sys.argv[4]), log=lambda *a: None, echo=lambda s: None)
print(json.dumps({"seconds": time.monotonic() - t0, "result": out}))
"""


def run_in(tree: Path, kind: str, inventory: Path, reports: Path | None = None
           ) -> tuple[float, object]:
    """(seconds, result) of `deploy` (changed per host) or `verify` (pytest's exit code)
    done by the code of `tree`; the wall time includes the child's imports."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree), kind, str(inventory), str(reports or tree)],
        cwd=tree, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} in {tree} failed:\n{proc.stderr[-3000:]}")
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    return wall, last["result"]
