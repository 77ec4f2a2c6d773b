"""Running counts over a side stream (dead letters, errors), read incrementally.

The side streams are capped (MAXLEN ~), so their length is not a total. Each scrape reads
only the entries added since the previous one (XRANGE from the last id seen) and adds them
to counters kept by the exporter; the first scrape counts what the stream still holds. An
exporter restart resets the counters, which Prometheus' rate()/increase() handle.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import redis

Labeller = Callable[[dict[str, str]], tuple[str, ...] | None]


class StreamTally:
    def __init__(self, stream: str, labeller: Labeller, batch: int = 1000) -> None:
        self.stream = stream
        self.labeller = labeller
        self.batch = batch
        self.last_id = "-"
        self.counts: Counter[tuple[str, ...]] = Counter()

    def update(self, r: redis.Redis, max_batches: int = 100) -> Counter[tuple[str, ...]]:
        """Count new entries; at most max_batches reads per scrape so a huge backlog cannot
        stall one (the rest is counted by the next scrapes)."""
        for _ in range(max_batches):
            start = "-" if self.last_id == "-" else f"({self.last_id}"
            entries = r.xrange(self.stream, min=start, max="+", count=self.batch)
            for entry_id, fields in entries:
                labels = self.labeller(fields)
                if labels is not None:
                    self.counts[labels] += 1
                self.last_id = entry_id
            if len(entries) < self.batch:
                break
        return self.counts


def dead_labels(fields: dict[str, str]) -> tuple[str, ...]:
    return (fields.get("agent") or "unknown",)


def error_labels(fields: dict[str, str]) -> tuple[str, ...]:
    """(agent, severity) of an `error.raised` envelope; unreadable ones still count."""
    try:
        payload = json.loads(fields.get("envelope", "{}")).get("payload") or {}
    except (ValueError, AttributeError):
        payload = {}
    return (str(payload.get("agent") or "unknown"), str(payload.get("severity") or "unknown"))
