"""benchmarks/redis_proc.py, the throwaway redis-server of the API, chatter, soak and bus
benchmarks: its password is in a 0600 config file, never on redis-server's command line
(any local user reads /proc/PID/cmdline)."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import psutil
import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from redis_proc import RedisProc  # noqa: E402


def test_password_only_in_a_0600_file_and_the_server_requires_it():
    with RedisProc("--maxmemory", "64mb") as server:
        assert server.client().ping()
        argv = " ".join(psutil.Process(server.proc.pid).cmdline())
        assert server.password not in argv
        assert server.client().config_get("maxmemory")["maxmemory"] == str(64 << 20)
        conf = server.dir / "redis.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
        assert stat.S_IMODE(server.dir.stat().st_mode) == 0o700
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port).ping()
    assert not server.dir.exists()


def test_pinned_to_the_cpu_asked():
    with RedisProc(cpu=0) as server:
        assert psutil.Process(server.proc.pid).cpu_affinity() == [0]
