"""Host figures: CPU, memory, and the disk the ARK trees use (psutil)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil
from prometheus_client.core import GaugeMetricFamily, Metric

from ark_runtime.metrics.base import Source


def tree_bytes(root: Path) -> int:
    """Bytes allocated to the files under `root` (what `du` counts), symlinks not followed."""
    total = 0
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue  # removed while we walked (a rotation): not an error
        except OSError:
            continue
    return total


class HostSource(Source):
    name = "host"

    def __init__(self, trees: Mapping[str, Path]) -> None:
        self.trees = dict(trees)
        psutil.cpu_percent(interval=None)  # prime: the first reading is since this call

    def metrics(self) -> Iterable[Metric]:
        cpu = GaugeMetricFamily("ark_host_cpu_usage_ratio",
                                "Host CPU busy since the previous scrape (0-1)")
        cpu.add_metric([], psutil.cpu_percent(interval=None) / 100.0)
        yield cpu
        load = GaugeMetricFamily("ark_host_load1", "1-minute load average")
        load.add_metric([], os.getloadavg()[0])
        yield load
        vm = psutil.virtual_memory()
        mem = GaugeMetricFamily("ark_host_memory_bytes", "Host memory", labels=["kind"])
        for kind in ("total", "available", "used"):
            mem.add_metric([kind], float(getattr(vm, kind)))
        yield mem
        yield from self._disk()

    def _disk(self) -> Iterable[Metric]:
        used = GaugeMetricFamily("ark_tree_bytes", "Disk used by an ARK tree", labels=["tree"])
        size = GaugeMetricFamily("ark_filesystem_size_bytes",
                                 "Size of the filesystem holding an ARK tree", labels=["tree"])
        free = GaugeMetricFamily("ark_filesystem_avail_bytes",
                                 "Space left (for non-root) on the filesystem holding an ARK tree",
                                 labels=["tree"])
        for tree, path in self.trees.items():
            if not path.is_dir():
                continue
            used.add_metric([tree], float(tree_bytes(path)))
            usage = psutil.disk_usage(str(path))
            size.add_metric([tree], float(usage.total))
            free.add_metric([tree], float(usage.free))
        yield from (used, size, free)
