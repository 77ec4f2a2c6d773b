"""Running commands: one place that turns a failed command into an OpsError."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from ark_ops.errors import OpsError


def run(cmd: Sequence[str], *, check: bool = True,
        timeout: float | None = None) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise OpsError(f"command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise OpsError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f}s") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()[-5:]
        raise OpsError(
            f"`{' '.join(cmd)}` failed with exit code {result.returncode}: " + " | ".join(detail)
        )
    return result
