"""`invoke redis.status` on the control side: every ark_redis host gets a row, one that does
not answer says why (the become password never shown) and makes the exit 1, and each Redis
lists the ARK hosts the placement points at it (a replica's pipeline is its primary's). A set
with replicas also shows what each of its Sentinels names (issue #20 §1)."""

from __future__ import annotations

import io
import shlex
import subprocess

import pytest

from ark_ops.errors import OpsError
from ark_ops.fleet import redis_status, ssh
from ark_ops.fleet.hostaccess import Become
from ark_ops.fleet.redis_sentinel import parse_masters
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


def _master_answer(ip: str, port: int, flags: str = "master") -> str:
    said = {"name": "ark-r1", "ip": ip, "port": str(port), "runid": "", "flags": flags,
            "num-slaves": "1", "num-other-sentinels": "2", "quorum": "2"}
    return "".join(f"{k}\n{v}\n" for k, v in said.items())


def _fleet(monkeypatch, *, replica: bool) -> None:
    become = Become(enabled=True, password=SUDO)
    r1 = FleetHost("r1", "10.0.0.1", user="deploy", become=become)
    r2 = FleetHost("r2", "10.0.0.2", user="deploy", become=become,
                   vars={"ark_redis_replica_of": "r1"} if replica else {})
    groups = {"ark_redis": [r1, r2], "ark": [r1, r2]}
    monkeypatch.setattr(ssh, "inventory_hosts", lambda inv, limit=None, group="ark": groups[group])
    monkeypatch.setattr("ark_ops.inventories.resolve_inventory", lambda *a, **k: "inv")


@pytest.mark.requirement("AGENT_02")
def test_a_replicated_set_shows_what_each_of_its_sentinels_names(monkeypatch) -> None:
    _fleet(monkeypatch, replica=True)
    refused = "#ark-stderr Could not connect to Redis at 10.0.0.9:26379: Connection refused\n"
    sentinels = ("#ark-master ark-r1\n#ark-sentinel 10.0.0.7:26379\n"
                 + _master_answer("10.0.0.1", 6379)
                 # redis-cli's warnings on stderr come apart from the answer, not in it
                 + "#ark-sentinel 10.0.0.8:26379\n#ark-stderr AUTH failed: WRONGPASS\n"
                 + _master_answer("10.0.0.1", 6379)
                 + "#ark-sentinel 10.0.0.9:26379\n" + refused)
    asked = []
    settled = subprocess.CompletedProcess([], 0, "", "")

    def runner(argv, **kw):
        assert all(SUDO not in word for word in argv)
        remote = shlex.split(argv[-1])[-1]
        if "unsettled_at" in remote:  # the settled line, from the host that answered
            assert argv[-2] == "deploy@10.0.0.1"
            return settled
        if "SENTINEL" in remote:
            asked.append(argv[-2])
            assert '"$ARK_REDIS_SENTINEL_MASTER" != ark-r1 ]' in remote
            return subprocess.CompletedProcess(argv, 0, sentinels, "")
        return subprocess.CompletedProcess(argv, 0, PRIMARY_INFO if "10.0.0.1" in argv[-2]
                                           else "role:slave\nmaster_link_status:up\n", "")

    out = io.StringIO()
    assert redis_status.run("inv", out=out, runner=runner) == 1  # a Sentinel did not answer
    assert asked == ["deploy@10.0.0.1"]  # once per set, from its first host that answers
    section = out.getvalue().split("\n\n")[1].splitlines()
    assert section[0] == "SENTINELS of r1's Redis set (master ark-r1, asked from r1)"
    assert section[2].split() == ["10.0.0.7:26379", "10.0.0.1:6379", "master", "2", "2"]
    assert section[3].split() == ["10.0.0.8:26379", "10.0.0.1:6379", "master", "2", "2"]
    assert section[4].split()[:4] == ["10.0.0.9:26379", "no", "answer:", "Could"]
    assert section[5].strip() == "2 of 3 Sentinels answered, all naming 10.0.0.1:6379"
    assert section[6].strip().startswith("settled: every Sentinel")

    sentinels = sentinels.replace(refused, _master_answer("10.0.0.1", 6379))
    assert redis_status.run("inv", out=io.StringIO(), runner=runner) == 0

    # A Sentinel that still sees a replica reporting itself primary: exit 1, and it is named.
    settled = subprocess.CompletedProcess([], 1, "10.0.0.8:26379\n", "")
    out = io.StringIO()
    assert redis_status.run("inv", out=out, runner=runner) == 1
    assert "NOT SETTLED: Sentinel 10.0.0.8:26379 still sees" in out.getvalue()
    # The line could not run (no env file, ssh dropped): not known, exit 1, the error shown.
    settled = subprocess.CompletedProcess([], 255, "", "ssh: connect to host: timed out\n")
    out = io.StringIO()
    assert redis_status.run("inv", out=out, runner=runner) == 1
    assert "settled not known: ssh: connect to host: timed out" in out.getvalue()


@pytest.mark.requirement("AGENT_02")
def test_sentinels_that_disagree_or_a_set_whose_hosts_do_not_answer_are_exit_1(
        monkeypatch) -> None:
    _fleet(monkeypatch, replica=True)
    split = ("#ark-master ark-r1\n#ark-sentinel 10.0.0.7:26379\n"
             + _master_answer("10.0.0.1", 6379, "s_down,master")
             + "#ark-sentinel 10.0.0.8:26379\n" + _master_answer("10.0.0.2", 6379))
    answers = {"split": (0, split, ""), "none": (3, "", f"{SUDO}\nthe env file names no "
                                                      "ARK_REDIS_SENTINELS")}
    for case, (rc, said, err) in answers.items():
        def runner(argv, rc=rc, said=said, err=err, **kw):
            if "SENTINEL" in shlex.split(argv[-1])[-1]:
                return subprocess.CompletedProcess(argv, rc, said, err)
            return subprocess.CompletedProcess(argv, 0, PRIMARY_INFO, "")

        out = io.StringIO()
        assert redis_status.run("inv", out=out, runner=runner) == 1, case
        assert SUDO not in out.getvalue()
        if case == "split":
            assert "they disagree: 10.0.0.1:6379 (1), 10.0.0.2:6379 (1)" in out.getvalue()
            assert "s_down,master" in out.getvalue()
        else:
            assert ("not asked: r1: the env file names no ARK_REDIS_SENTINELS; "
                    "r2: the env file") in out.getvalue()


@pytest.mark.requirement("AGENT_02")
def test_a_set_without_replicas_prints_as_before_and_asks_no_sentinel(monkeypatch) -> None:
    _fleet(monkeypatch, replica=False)
    commands = []

    def runner(argv, **kw):
        commands.append(argv[-1])
        return subprocess.CompletedProcess(argv, 0, PRIMARY_INFO, "")

    out = io.StringIO()
    assert redis_status.run("inv", out=out, runner=runner) == 0
    assert len(commands) == 2 and not any("SENTINEL" in c for c in commands)
    assert len(out.getvalue().splitlines()) == 3 and "SENTINEL" not in out.getvalue()


@pytest.mark.requirement("AGENT_02")
def test_anything_but_the_sentinel_lines_answer_is_refused() -> None:
    with pytest.raises(OpsError, match="not a Sentinel answer"):
        parse_masters("role:master\n")
    master, views = parse_masters("#ark-master m\n#ark-sentinel 1.2.3.4:5\n\n")
    assert master == "m" and views[0].error == "no answer within 10 s"
