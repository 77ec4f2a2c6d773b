"""`invoke redis.status` on the control side: every ark_redis host gets a row, one that does
not answer says why (the become password never shown) and makes the exit 1, and each Redis
lists the ARK hosts the placement points at it (a replica's pipeline is its primary's)."""

from __future__ import annotations

import io
import subprocess

from ark_ops.fleet import redis_status, ssh
from ark_ops.fleet.hostaccess import Become
from ark_ops.fleet.ssh import FleetHost

PRIMARY_INFO = ("# Replication\r\nrole:master\r\nconnected_slaves:1\r\n"
                "slave0:ip=10.0.0.2,port=6380,state=online,offset=900,lag=0\r\n"
                "master_repl_offset:1000\r\n")
SUDO = "sudo-password-never-shown"


def test_a_row_per_redis_host_and_exit_1_when_one_does_not_answer(monkeypatch) -> None:
    become = Become(enabled=True, password=SUDO)
    r1 = FleetHost("r1", "10.0.0.1", user="deploy", become=become)
    r2 = FleetHost("r2", "10.0.0.2", user="deploy", become=become,
                   vars={"ark_redis_replica_of": "r1"})
    agents = [FleetHost(n, f"10.0.1.{i}") for i, n in enumerate(("a1", "a2"))]
    groups = {"ark_redis": [r1, r2], "ark": [r1, r2, *agents]}
    monkeypatch.setattr(ssh, "inventory_hosts", lambda inv, limit=None, group="ark": groups[group])
    monkeypatch.setattr("ark_ops.inventories.resolve_inventory", lambda *a, **k: "inv")

    def runner(argv, **kw):
        assert SUDO not in " ".join(argv)  # the become password goes on stdin only
        if "10.0.0.1" in " ".join(argv):
            return subprocess.CompletedProcess(argv, 0, PRIMARY_INFO, "")
        return subprocess.CompletedProcess(argv, 1, "", f"[sudo] password: {SUDO}\n"
                                           "Could not connect to Redis at 10.0.0.2:6379")

    out = io.StringIO()
    assert redis_status.run("inv", out=out, runner=runner) == 1
    rows = out.getvalue().splitlines()
    assert rows[1].startswith("r1 ") and " primary " in rows[1]
    assert "10.0.0.2:6380 online lag 0 s, 100 bytes behind" in rows[1]
    assert rows[1].rstrip().endswith("a1, a2, r1, r2")  # r2 is a replica: its pipeline is r1's
    assert rows[2].startswith("r2 ") and "unreachable: Could not connect" in rows[2]
    assert SUDO not in out.getvalue()
