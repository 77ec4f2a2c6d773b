"""AGENT_02: a full Redis (maxmemory reached, noeviction) holds an agent back instead of
killing it. Its commits are refused; it backs off and retries (`redis_full` in its log), and
once memory is freed the held message is committed exactly once. Exiting instead would
crash-loop the unit until systemd gives up on it for good."""

from __future__ import annotations

import json
import time

import pytest
from conftest import Lab, wait_for
from helpers import envelopes, log_lines, pending
from test_bus_faults import a_pattern_envelope

from ark_runtime.bus.errors import PAUSE_KEY
from ark_runtime.bus.streams import inbox


@pytest.fixture
def full_redis(r):
    """Call it to make Redis refuse writes (maxmemory well under what it uses, a 4 MiB
    filler included, so freed client buffers cannot bring it back under); undone after."""
    before = r.config_get("maxmemory*")

    def fill() -> None:
        r.set("test:filler", "x" * (4 << 20))
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", "1mb")

    def free() -> None:
        r.config_set("maxmemory", before["maxmemory"])
        r.config_set("maxmemory-policy", before["maxmemory-policy"])

    yield fill, free
    free()
    r.delete("test:filler")


@pytest.mark.requirement("AGENT_02")
def test_a_full_redis_holds_the_agent_and_loses_nothing(lab: Lab, r, full_redis) -> None:
    fill, free = full_redis
    kenny = lab.start("kenny")  # its group exists before Redis fills
    lab.stop(kenny)
    r.xadd(inbox("kenny"), a_pattern_envelope().to_fields())
    fill()
    with pytest.raises(Exception, match="maxmemory"):
        r.set("test:probe", "refused")  # Redis is full indeed
    kenny = lab.start("kenny", wait=False)  # starting needs a write too: it waits
    log_dir = kenny.env["ARK_LOG_DIR"]

    def full_reports() -> list[dict]:
        return [line for line in log_lines(log_dir, "kenny") if line.get("event") == "redis_full"]

    wait_for(full_reports, what="kenny to report the full Redis")
    time.sleep(1.0)  # a few more refused retries
    assert kenny.proc.poll() is None, kenny.stderr()
    assert r.xlen(inbox("hrm")) == 0  # nothing half committed
    free()
    kenny.wait_ready()
    wait_for(lambda: r.xlen(inbox("hrm")) == 1 and pending(r, "kenny") == 0,
             what="the held pattern to become one plan")

    # Running when Redis fills: held (a test pause) while a pattern waits and Redis fills,
    # then let go. Its commit is refused until memory is freed, and it keeps running.
    r.hset(PAUSE_KEY, "test", json.dumps({"agents": ["kenny"]}))
    time.sleep(1.5)  # past the pause check's cache
    r.xadd(inbox("kenny"), a_pattern_envelope().to_fields())
    reported = len(full_reports())
    fill()
    r.hdel(PAUSE_KEY, "test")  # a deletion: allowed in a full Redis
    wait_for(lambda: len(full_reports()) > reported, what="kenny to report the full Redis again")
    time.sleep(1.0)
    assert kenny.proc.poll() is None, kenny.stderr()
    assert r.xlen(inbox("hrm")) == 1
    free()
    wait_for(lambda: r.xlen(inbox("hrm")) == 2 and pending(r, "kenny") == 0,
             what="the second held pattern to become one plan")
    time.sleep(0.5)
    plans = envelopes(r, inbox("hrm"))
    assert [e.type for e in plans] == ["trade.plan"] * 2
    assert len({e.message_id for e in plans}) == 2  # each once
    assert kenny.proc.poll() is None, kenny.stderr()
