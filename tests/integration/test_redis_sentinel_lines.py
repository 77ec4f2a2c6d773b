"""Issue #20 §1: the host-side lines of `invoke redis.failover` and of `invoke redis.status`'s
SENTINELS section (ark_ops/fleet/redis_sentinel.py), run for real with bash against a primary,
its replica and three Sentinels (tests/integration/sentinel_redis.py), reading their addresses
and master name from an env file as a deployed host's root tools do. These Sentinels take no
login and no TLS: the env file has no user, password or TLS directory, so those parts of the
line come out empty. The SSH, sudo and audit around the lines are tests/unit's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import wait_for
from sentinel_redis import MASTER, SentinelRedis

from ark_ops.fleet.redis_sentinel import (
    ASKED,
    UNSETTLED_EXIT,
    agreement,
    failover_command,
    masters_command,
    parse_masters,
    settled_command,
)

pytestmark = pytest.mark.requirement("AGENT_02")


def _env_file(tmp_path: Path, sentinels: str) -> str:
    env = tmp_path / "infrastructure.env"
    env.write_text(f'ARK_REDIS_SENTINELS="{sentinels}"\nARK_REDIS_SENTINEL_MASTER="{MASTER}"\n')
    env.chmod(0o600)
    return str(env)


def _bash(line: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=timeout)


def test_the_failover_line_moves_the_primary_and_the_status_line_reads_every_sentinel(
        replicated: SentinelRedis, tmp_path) -> None:
    env = _env_file(tmp_path, replicated.addresses)
    first, second = (s.port for s in replicated.servers)
    assert replicated.primary_port() == first

    status = _bash(masters_command(MASTER, env))
    assert status.returncode == 0, status.stderr
    master, views = parse_masters(status.stdout)
    assert master == MASTER
    assert [v.address for v in views] == replicated.addresses.split(",")
    assert {(v.primary, v.quorum, v.others, v.error) for v in views} == \
        {(f"127.0.0.1:{first}", "2", "2", "")}
    assert "master" in views[0].flags.split(",")
    assert agreement(views) == (True, f"3 of 3 Sentinels answered, all naming 127.0.0.1:{first}")

    moved = _bash(failover_command(MASTER, 60, env))
    assert moved.returncode == 0, moved.stdout + moved.stderr
    asked, result = moved.stdout.splitlines()
    assert asked.startswith("asking Sentinel 127.0.0.1:")
    assert asked.endswith(f"(primary 127.0.0.1:{first})")
    assert result == f"127.0.0.1:{first} -> 127.0.0.1:{second}"
    wait_for(lambda: replicated.role(replicated.servers[1]) == "master", 30,
             what="the promoted replica to say it is the primary")
    wait_for(lambda: replicated.primary_port() == second, 30,
             what="the Sentinels' majority to name the new primary")

    # Every Sentinel names the new primary in its next answer.
    def all_moved():
        _master, again = parse_masters(_bash(masters_command(MASTER, env)).stdout)
        return agreement(again)[0] and again[0].primary == f"127.0.0.1:{second}"

    wait_for(all_moved, 30, interval=0.5, what="every Sentinel to name the new primary")


def test_a_dead_sentinel_is_passed_over_and_shown_as_not_answering(
        replicated: SentinelRedis, tmp_path) -> None:
    env = _env_file(tmp_path, replicated.addresses)
    replicated.sentinels[0].kill()
    replicated.sentinels[0].wait(10)
    _master, views = parse_masters(_bash(masters_command(MASTER, env)).stdout)
    assert views[0].error.startswith("Could not connect to Redis at 127.0.0.1:")
    healthy, summary = agreement(views)
    assert not healthy and summary.startswith("2 of 3 Sentinels answered, all naming")

    moved = _bash(failover_command(MASTER, 60, env))
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert f"asking Sentinel 127.0.0.1:{replicated.sentinel_ports[1]} " in moved.stdout
    assert moved.stdout.splitlines()[-1].endswith(f"-> 127.0.0.1:{replicated.servers[1].port}")


def test_a_host_without_sentinels_or_with_another_sets_is_refused_before_asking(
        tmp_path) -> None:
    bare = tmp_path / "bare.env"
    bare.write_text('ARK_REDIS_PORT="6379"\n')
    for line in (failover_command(MASTER, 5, str(bare)), masters_command(MASTER, str(bare))):
        out = _bash(line, 30)
        assert out.returncode == 3 and "this host has no Sentinels" in out.stderr
    other = _env_file(tmp_path, "127.0.0.1:1")  # nothing there: the check comes first
    out = _bash(failover_command("ark-r9", 5, other), 30)
    assert out.returncode == 3 and f"names Sentinel master {MASTER}, not ark-r9" in out.stderr
    assert out.stdout == ""


def test_no_sentinel_answering_is_said_and_nothing_is_asked(tmp_path) -> None:
    env = _env_file(tmp_path, "127.0.0.1:1,[::1]:1")
    out = _bash(failover_command(MASTER, 5, env), 60)
    assert out.returncode == 4 and "no Sentinel of 127.0.0.1:1,[::1]:1 names a primary" in \
        out.stderr
    assert "asking" not in out.stdout


def test_a_replica_reporting_itself_a_primary_holds_the_failover_until_the_set_settles(
        replicated: SentinelRedis, tmp_path) -> None:
    """A replica that came back claiming to be a primary (a host booted with the primary's
    old config) is converted back by the Sentinels, but each reads its role only every 10 s:
    a FAILOVER asked while one still sees a rogue primary was undone on the lab. The settled
    line says which Sentinel is not there yet; the failover line waits for all of them."""
    env = _env_file(tmp_path, replicated.addresses)
    first, second = replicated.servers
    replicated.client(second).execute_command("REPLICAOF", "NO", "ONE")
    named = wait_for(lambda: (r := _bash(settled_command(MASTER, env))).returncode == 1
                     and r.stdout.strip(), 60, interval=0.5,
                     what="a Sentinel to see the replica report itself a primary")
    assert named in replicated.addresses.split(","), named
    # Not settled yet: the line waits, then says so, and asks nothing.
    held = _bash(failover_command(MASTER, 1, env))
    if held.returncode == UNSETTLED_EXIT:  # the Sentinels may have caught up meanwhile
        assert ASKED not in held.stdout and "has not settled" in held.stderr, held
        assert replicated.primary_port() == first.port
    wait_for(lambda: _bash(settled_command(MASTER, env)).returncode == 0, 90, interval=0.5,
             what="every Sentinel to see the converted replica as a replica")
    assert replicated.role(second) == "slave"
    moved = _bash(failover_command(MASTER, 60, env))
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert moved.stdout.splitlines()[-1] == f"127.0.0.1:{first.port} -> 127.0.0.1:{second.port}"
