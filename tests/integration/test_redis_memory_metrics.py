"""Issue #19 (LOG_03): a full Redis is a figure, not only a silent stall. The exporter reports
used_memory, maxmemory and the writes Redis refused with OOM, on a real redis-server whose
maxmemory is set just above what it holds (the alerts ArkRedisMemoryHigh and
ArkRedisRefusingWrites read exactly these)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from conftest import Lab
from test_metrics_exporter import Exporter, scrape, value


@pytest.fixture
def small_redis(r: redis.Redis) -> Iterator[redis.Redis]:
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", int(r.info("memory")["used_memory"]) + 2_000_000)
    r.config_resetstat()  # errorstats start from zero
    try:
        yield r
    finally:
        r.config_set("maxmemory", 0)
        r.flushall()


@pytest.mark.requirement("LOG_03")
def test_exporter_reports_memory_and_refused_writes(lab: Lab, small_redis) -> None:
    exporter = Exporter(lab.env(), "--bus")
    try:
        _, s = scrape(exporter.port)
        assert value(s, "ark_redis_oom_rejected_total") == 0
        limit = value(s, "ark_redis_maxmemory_bytes")
        assert limit == int(small_redis.config_get("maxmemory")["maxmemory"])
        assert 0 < value(s, "ark_redis_used_memory_bytes") < limit
        refused = 0
        for i in range(200):  # 100 kB each: the limit is reached well before the end
            try:
                small_redis.set(f"ark:test:fill:{i}", "x" * 100_000)
            except redis.OutOfMemoryError:
                refused += 1
        assert refused > 0
        _, s = scrape(exporter.port)
        assert value(s, "ark_redis_up") == 1  # PING still answers: hence the new figures
        assert value(s, "ark_redis_oom_rejected_total") == refused
        assert value(s, "ark_redis_used_memory_bytes") / limit > 0.8
    finally:
        exporter.close()
