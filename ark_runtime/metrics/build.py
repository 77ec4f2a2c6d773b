"""Build info: the runtime version and the lock its venv was installed from."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from prometheus_client.core import InfoMetricFamily, Metric

from ark_runtime import __version__
from ark_runtime.metrics.base import Source


def lock_hash(prefix: str | None = None) -> str:
    """The deploy installs each lock into /opt/ark/venvs/<first 12 of its sha256>."""
    venv = Path(prefix or sys.prefix)
    return venv.name if venv.parent.name == "venvs" else "unknown"


class BuildSource(Source):
    name = "build"

    def metrics(self) -> Iterable[Metric]:
        info = InfoMetricFamily("ark_build", "Runtime version and lock hash of this host")
        info.add_metric([], {"version": __version__, "lock_sha": lock_hash(),
                             "python": ".".join(map(str, sys.version_info[:3]))})
        yield info
