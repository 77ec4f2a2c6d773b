"""A collector per source, each guarded: one failing source never fails the whole scrape."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("ark.metrics")


class Source(Collector):
    """One source of figures. Subclasses implement `metrics()`."""

    name = "source"

    def metrics(self) -> Iterable[Metric]:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        return iter(list(self.metrics()))

    def describe(self) -> list[Metric]:
        return []  # collected lazily: describing must not touch Redis or systemd


class Guarded(Collector):
    """Runs every source, times it and reports whether it answered."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources
        self._failing: set[str] = set()

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ark_collector_up", "1 when the source answered this scrape",
                               labels=["collector"])
        took = GaugeMetricFamily("ark_collector_duration_seconds",
                                 "Time spent reading the source", labels=["collector"])
        for source in self.sources:
            started = time.perf_counter()
            try:
                families = list(source.metrics())
            except Exception as exc:  # a source down is a figure, not a failed scrape
                families = []
                ok = 0.0
                if source.name not in self._failing:
                    log.warning("metrics source %s failed: %s", source.name, exc,
                                extra={"event": "metrics_source_failed",
                                       "collector": source.name})
                self._failing.add(source.name)
            else:
                ok = 1.0
                self._failing.discard(source.name)
            up.add_metric([source.name], ok)
            took.add_metric([source.name], time.perf_counter() - started)
            yield from families
        yield up
        yield took
