"""Redis and the streams: lengths, consumer-group pending and lag, per-agent totals; and
HRM's risk state as HRM published it there (metrics/breakers.py).

Reported by the exporter on the Redis hosts only (see the role). With Sentinels (issue #20)
also how many replicas the set has and how many of them are down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ark_runtime.bus.errors import PAUSE_KEY
from ark_runtime.bus.risk import read_risk_state
from ark_runtime.bus.streams import DEAD_STREAM, ERRORS_STREAM, PREFIX, failures_key
from ark_runtime.metrics.base import Source
from ark_runtime.metrics.breakers import risk_metrics
from ark_runtime.metrics.tally import StreamTally, dead_labels, error_labels


class BusSource(Source):
    name = "bus"

    def __init__(self, client: redis.Redis,
                 replicas: Callable[[], list[dict[str, Any]] | None] = lambda: None) -> None:
        self.r = client
        self.replicas = replicas  # clients.sentinel_replicas, bound to the settings
        self.dead = StreamTally(DEAD_STREAM, dead_labels)
        self.errors = StreamTally(ERRORS_STREAM, error_labels)

    def metrics(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("ark_redis_up", "1 when Redis answered this scrape")
        try:
            self.r.ping()
        except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError):
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from self._memory()
        yield from self._streams()
        yield from self._tallies()
        paused = GaugeMetricFamily("ark_agent_paused",
                                   "1 while a critical error holds this agent's producers",
                                   labels=["agent"])
        for origin in self.r.hkeys(PAUSE_KEY):
            paused.add_metric([origin], 1.0)
        yield paused
        yield from risk_metrics(read_risk_state(self.r))
        yield from self._replication()

    def _replication(self) -> Iterable[Metric]:
        """Issue #20: a replica down leaves the set one failure from losing the pipeline
        (and, with WAIT on, commits waiting); the Sentinels remember it while it is away."""
        up = GaugeMetricFamily("ark_redis_sentinel_up",
                               "1 when a Sentinel of this pipeline's Redis set answered")
        try:
            known = self.replicas()
        except redis.RedisError:
            up.add_metric([], 0.0)  # no Sentinel: nothing can fail over now
            yield up
            return
        if known is None:
            return
        up.add_metric([], 1.0)
        yield up
        down = [r for r in known if r.get("is_sdown") or r.get("is_odown")
                or r.get("is_disconnected") or r.get("master-link-status") == "err"]
        total = GaugeMetricFamily("ark_redis_replicas",
                                  "Replicas the Sentinels know for this pipeline's Redis set")
        total.add_metric([], float(len(known)))
        missing = GaugeMetricFamily("ark_redis_replicas_down",
                                    "Of those, replicas that are down or not linked")
        missing.add_metric([], float(len(down)))
        yield from (total, missing)

    def _memory(self) -> Iterable[Metric]:
        """What the memory alerts need (issue #19): with `noeviction` a full Redis still
        answers PING, so `ark_redis_up` alone says nothing about refused writes."""
        memory = self.r.info("memory")
        used = GaugeMetricFamily("ark_redis_used_memory_bytes",
                                 "Redis INFO used_memory: bytes allocated for data")
        used.add_metric([], float(memory.get("used_memory", 0)))
        limit = GaugeMetricFamily("ark_redis_maxmemory_bytes",
                                  "Redis maxmemory (0: no limit)")
        limit.add_metric([], float(memory.get("maxmemory", 0)))
        # errorstat_OOM: replies "-OOM command not allowed when used memory > 'maxmemory'"
        # since the server started (Redis >= 6.2); absent until the first one.
        oom = self.r.info("errorstats").get("errorstat_OOM", {})
        refused = CounterMetricFamily("ark_redis_oom_rejected",
                                      "Commands Redis refused because maxmemory was reached")
        refused.add_metric([], float(oom.get("count", 0) if isinstance(oom, dict) else 0))
        yield from (used, limit, refused)

    def _streams(self) -> Iterable[Metric]:
        length = GaugeMetricFamily("ark_stream_length", "Entries in the stream",
                                   labels=["stream"])
        pending = GaugeMetricFamily("ark_stream_group_pending",
                                    "Delivered to the group, not yet acked",
                                    labels=["stream", "group"])
        lag = GaugeMetricFamily("ark_stream_group_lag", "Entries not yet delivered to the group",
                                labels=["stream", "group"])
        processed = CounterMetricFamily("ark_agent_processed",
                                        "Messages the agent's group read and acked",
                                        labels=["agent"])
        failing = GaugeMetricFamily("ark_agent_failing_messages",
                                    "Messages whose last delivery failed (awaiting retry)",
                                    labels=["agent"])
        for key in sorted(self.r.scan_iter(match=f"{PREFIX}*", count=100, _type="stream")):
            stream = key[len(PREFIX):]
            length.add_metric([stream], float(self.r.xlen(key)))
            for group in self.r.xinfo_groups(key):
                name = group["name"]
                # A Joey shard (stream joey-1, group joey) is reported as its own instance.
                owner = stream if stream.startswith(f"{name}-") else name
                pending.add_metric([stream, name], float(group["pending"]))
                if group.get("lag") is not None:
                    lag.add_metric([stream, name], float(group["lag"]))
                if group.get("entries-read") is not None:
                    processed.add_metric(
                        [owner], float(max(0, group["entries-read"] - group["pending"])))
                failing.add_metric([owner], float(self.r.hlen(failures_key(owner))))
        yield from (length, pending, lag, processed, failing)

    def _tallies(self) -> Iterable[Metric]:
        dead = CounterMetricFamily("ark_agent_dead_lettered",
                                   "Messages the agent sent to the dead-letter stream",
                                   labels=["agent"])
        for (agent,), n in sorted(self.dead.update(self.r).items()):
            dead.add_metric([agent], float(n))
        failed = CounterMetricFamily("ark_agent_failed",
                                     "Errors the agent reported on the error bus",
                                     labels=["agent", "severity"])
        for (agent, severity), n in sorted(self.errors.update(self.r).items()):
            failed.add_metric([agent, severity], float(n))
        yield from (dead, failed)
