"""Issue #19 §3 (SEC_01): a Redis user per component, on a real redis-server loading the ACL
file rendered from the pipeline declaration (ark_runtime/bus/acl.py). The pipeline runs end
to end with each agent logged in as its own user; as each component FLUSHALL, CONFIG SET dir,
DEBUG, SHUTDOWN and MODULE are refused, and so are writes outside its keys; `default` is off."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import REDIS_SERVER, Lab, RedisServer, free_port, wait_for
from test_pipeline import SYMBOLS, expected_outcomes, outcomes

from ark_runtime.api.admin import _replay
from ark_runtime.bus.acl import instances, render_acl_file, user_names
from ark_runtime.bus.advert import ReaderGate, advertisement, fetch_from
from ark_runtime.bus.keys import reads_key

SHARDS = 2


class AclRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.passwords = {n: secrets.token_hex(16) for n in user_names(SHARDS)}
        acl = workdir / "users.acl"
        acl.write_text(render_acl_file(
            {n: hashlib.sha256(p.encode()).hexdigest() for n, p in self.passwords.items()},
            SHARDS))
        acl.chmod(0o600)
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--aclfile",
             str(acl), "--save", "", "--appendonly", "no", "--dir", str(workdir),
             "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def client(self, user: str) -> redis.Redis:
        return redis.Redis(port=self.port, username=user, password=self.passwords[user],
                           decode_responses=True)

    def url(self, user: str) -> str:
        return f"redis://{user}:{self.passwords[user]}@127.0.0.1:{self.port}/0"


@pytest.fixture
def acl_redis(tmp_path) -> Iterator[AclRedis]:
    server = AclRedis(tmp_path)

    def up() -> bool:
        assert server.proc.poll() is None, server.proc.stderr.read()
        try:
            return bool(server.client("admin").ping())
        except redis.ConnectionError:
            return False

    wait_for(up, 15, what="redis-server with the ACL file")
    yield server
    server.proc.terminate()
    server.proc.wait(10)


COMPONENTS = [n for n in user_names(SHARDS) if n != "admin"]


@pytest.mark.requirement("SEC_01")
def test_acl_list_matches_the_declaration_and_default_is_off(acl_redis: AclRedis) -> None:
    listed = acl_redis.client("admin").acl_list()
    assert sorted(line.split()[1] for line in listed) == sorted([*user_names(SHARDS),
                                                                 "default"])
    assert any(line.startswith("user default off") for line in listed)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=acl_redis.port).ping()  # no user: `default`, which is off
    assert {i for i, _ in instances(SHARDS)} <= set(COMPONENTS)


@pytest.mark.requirement("SEC_01")
@pytest.mark.parametrize("user", COMPONENTS)
def test_no_component_can_flush_reconfigure_or_stop_redis(acl_redis: AclRedis,
                                                          user: str) -> None:
    c = acl_redis.client(user)
    assert c.ping()
    for command in (("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "SET", "dir", "/tmp"),
                    ("CONFIG", "GET", "requirepass"), ("SHUTDOWN", "NOSAVE"),
                    ("ACL", "LIST"), ("KEYS", "*"), ("MODULE", "LIST")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            c.execute_command(*command)
    # DEBUG is refused before the ACL is consulted (enable-debug-command no, the default),
    # and by the ACL too: the user does not have it.
    with pytest.raises(redis.ResponseError, match="not allowed"):
        c.execute_command("DEBUG", "SLEEP", "0")
    rules = acl_redis.client("admin").acl_getuser(user)
    assert "+debug" not in str(rules) and "-@all" in " ".join(
        acl_redis.client("admin").acl_list()[1:])
    assert acl_redis.client("admin").ping()  # still up: SHUTDOWN was refused


@pytest.mark.requirement("SEC_01")
def test_each_component_writes_only_its_own_keys(acl_redis: AclRedis) -> None:
    kyle, api, exporter = (acl_redis.client(u) for u in ("kyle", "api", "exporter"))
    kyle.xadd("ark:stream:joey", {"k": "v"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        kyle.xadd("ark:stream:hrm", {"k": "v"})  # skipping Joey and Kenny
    with pytest.raises(redis.exceptions.NoPermissionError):
        acl_redis.client("kenny").set("ark:kyle:cursor:feed", 0)
    assert api.xrange("ark:stream:joey")  # the console shows the streams
    api.hset("ark:pause", "operator", "{}")
    with pytest.raises(redis.exceptions.NoPermissionError):
        api.set("ark:kyle:cursor:feed", 0)
    with pytest.raises(redis.exceptions.NoPermissionError):
        api.delete("ark:stream:joey")  # may queue into an inbox, never read-modify it away
    # The console's dead-letter replay (one script: XDEL dead, XADD inbox) works as `api`.
    acl_redis.client("admin").xadd("ark:stream:dead", {
        "reason": "t", "agent": "joey", "source_stream": "ark:stream:joey",
        "original": json.dumps({"envelope": "{}"})})
    assert _replay(api, 10) == "replayed 1, skipped 0"
    assert int(exporter.info("memory")["used_memory"]) > 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        exporter.xadd("ark:stream:errors", {"k": "v"})


@pytest.mark.requirement("SEC_01")
@pytest.mark.requirement("TEST_01")
def test_the_pipeline_runs_with_a_user_per_agent(acl_redis: AclRedis, tmp_path) -> None:
    expected = expected_outcomes(seed=0, bars=200)
    server = RedisServer(acl_redis.port, "unused-the-url-carries-each-user", acl_redis.proc)
    lab = Lab(server, tmp_path / "world")
    admin = acl_redis.client("admin")
    try:
        shards = {"ARK_JOEY_SHARDS": str(SHARDS)}
        for instance, _agent in instances(SHARDS):
            # Kyle starts last (the feed); the executor stays off as in test_pipeline: the
            # oracle holds every approval open, and fills/closes would time-shift exposure.
            if instance in ("kyle", "executor"):
                continue
            lab.start(instance, ARK_REDIS_URL=acl_redis.url(instance), **shards)
        lab.start("kyle", ARK_REDIS_URL=acl_redis.url("kyle"), ARK_FEED="synthetic",
                  ARK_FEED_SYMBOLS=",".join(SYMBOLS), ARK_FEED_SEED="0", ARK_FEED_BARS="200",
                  **shards)
        wait_for(lambda: admin.xlen("ark:stream:decisions") >= len(expected), 60,
                 what="every decision, each agent as its own Redis user")
        assert outcomes(admin) == expected
        for agent in lab.procs:
            assert agent.proc.poll() is None, f"{agent.name}: {agent.stderr()[-2000:]}"
            assert "NOPERM" not in agent.stderr()
        # Each consumer advertised what it reads as its own user; the executor's user reads
        # HRM's (its marks are gated on it) but cannot forge it, and a user without the grant
        # reads "not advertised" rather than failing.
        for instance, agent in instances(SHARDS):
            if agent not in ("kyle", "executor"):
                assert admin.get(reads_key(instance)) == advertisement(agent)
        executor = acl_redis.client("executor")
        assert ReaderGate(fetch_from(executor)).allows("position.marked")
        with pytest.raises(redis.exceptions.NoPermissionError):
            executor.set(reads_key("hrm"), advertisement("hrm"))
        assert not ReaderGate(fetch_from(acl_redis.client("kenny"))).allows("position.marked")
    finally:
        lab.close()
