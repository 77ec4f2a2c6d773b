"""Issue #19 (AGENT_02): turning the AOF on for a Redis that already holds the bus. Restarted
straight into `appendonly yes` it comes back EMPTY (no AOF yet, and Redis 7 then ignores
dump.rdb); the role's switch-over script (roles/ark_redis/files/ark-redis-aof-on) turns it on
live first, so the restart keeps every stream."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import REPO
from deployed_redis import DeployedRedis

SCRIPT = REPO / "roles" / "ark_redis" / "files" / "ark-redis-aof-on"


def _switch(server: DeployedRedis) -> str:
    env = {**os.environ, "REDISCLI_AUTH": server.password}
    return subprocess.run(["sh", str(SCRIPT), str(server.port)], env=env, capture_output=True,
                          text=True, check=True, timeout=120).stdout.strip()


def _upgrade(tmp_path, with_script: bool) -> int:
    old = DeployedRedis(tmp_path / "redis", ark_redis_appendonly=False)
    old_conf = (old.dir / "ark.conf").read_text()
    old.start()
    r = old.server.client()
    for i in range(500):
        r.xadd("ark:stream:joey", {"n": str(i)})
    r.save()
    if with_script:
        assert _switch(old) == "changed"
        assert _switch(old) == "unchanged"  # idempotent
    old.stop()
    new = DeployedRedis(tmp_path / "redis")  # the role's default: AOF on, same directory
    new.port, new.password = old.port, old.password
    # The deploy's new config: the old one with the AOF on (same port, password, dir).
    (new.dir / "ark.conf").write_text(old_conf.replace("appendonly no", "appendonly yes"))
    new.start()
    try:
        return new.server.client().xlen("ark:stream:joey")
    finally:
        new.stop()


@pytest.mark.requirement("AGENT_02")
def test_switching_the_aof_on_live_keeps_the_streams(tmp_path) -> None:
    assert _upgrade(tmp_path, with_script=True) == 500


@pytest.mark.requirement("AGENT_02")
def test_restarting_straight_into_aof_would_have_lost_them(tmp_path) -> None:
    # The failure the script prevents, shown on the same Redis build.
    assert _upgrade(tmp_path, with_script=False) == 0


def test_no_redis_running_is_not_an_error(tmp_path) -> None:
    server = DeployedRedis(tmp_path / "redis")  # never started
    assert _switch(server) == "unchanged"
