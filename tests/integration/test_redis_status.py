"""Issue #20: `invoke redis.status` reads INFO replication as real Redis servers answer it (a
primary with a replica, the replica, a Redis alone), parsed and rendered as the operator sees
it. The command's SSH and login path runs on the lab (tests/e2e/test_split_topology.py)."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import wait_for
from deployed_redis import DeployedRedis

from ark_ops.errors import OpsError
from ark_ops.fleet.redis_status import HostStatus, parse_info, render

pytestmark = pytest.mark.requirement("AGENT_02")


def test_a_primary_its_replica_and_a_redis_alone_as_the_status_shows_them(tmp_path) -> None:
    # The replica without an AOF: one still writing its first AOF after the sync refuses
    # SIGTERM ("Writing initial AOF, can't exit") and the teardown would wait it out.
    primary = DeployedRedis(tmp_path / "p")
    replica = DeployedRedis(tmp_path / "r", ark_redis_appendonly=False)
    alone = DeployedRedis(tmp_path / "alone")
    primary.start()
    alone.start()
    replica.password = primary.password
    with (replica.dir / "redis.conf").open("a") as conf:
        conf.write(f"masterauth {primary.password}\nreplicaof 127.0.0.1 {primary.port}\n")
    replica.start()
    try:
        p, r = primary.server.client(), replica.server.client()
        p.set("k", "v")
        # Both ends: the replica says "link up" a moment before the primary moves its entry
        # from wait_bgsave to online (CI caught the gap on a busy machine).
        wait_for(lambda: r.info("replication").get("master_link_status") == "up"
                 and r.get("k") == "v"
                 and p.info("replication").get("slave0", {}).get("state") == "online",
                 60, what="the replica to sync, as both ends see it")
        info = {name: parse_info(_raw(server))
                for name, server in (("p", primary), ("r", replica), ("alone", alone))}
        assert info["p"].role == "primary" and len(info["p"].replicas) == 1
        assert info["p"].replicas[0]["port"] == str(replica.port)
        assert info["p"].replicas[0]["state"] == "online"
        assert info["r"].role == "replica" and info["r"].link == "up"
        assert info["r"].primary == f"127.0.0.1:{primary.port}"
        assert info["alone"].role == "primary" and info["alone"].replicas == []
        table = render([HostStatus("h1", ["h1", "h2"], info["p"]),
                        HostStatus("h2", [], info["r"]),
                        HostStatus("h3", ["h3"], None, "connection refused")])
        lines = table.splitlines()
        assert f"127.0.0.1:{replica.port} online lag" in lines[1] and lines[1].endswith("h1, h2")
        assert f"replica of 127.0.0.1:{primary.port}, link up" in lines[2]
        assert "unreachable: connection refused" in lines[3]
    finally:
        for server in (replica, primary, alone):
            server.close()


def _raw(server: DeployedRedis) -> str:
    """INFO replication's text as redis-cli prints it on the host (the password through its
    environment, as the root tools hand it)."""
    return subprocess.run(["redis-cli", "--no-auth-warning", "-p", str(server.port),
                           "INFO", "replication"], capture_output=True, text=True, check=True,
                          timeout=30, env={**os.environ, "REDISCLI_AUTH": server.password}).stdout


def test_anything_but_an_info_answer_is_refused() -> None:
    with pytest.raises(OpsError, match="not an INFO replication answer"):
        parse_info("NOAUTH Authentication required.")
