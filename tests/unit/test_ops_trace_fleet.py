"""AGENT_03: `invoke trace ID` across hosts. The remote grep runs locally with sh (only the
SSH hop is removed); parsing and ordering are ark_runtime.trace's own."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ark_ops.fleet.ssh import FleetHost
from ark_ops.fleet.trace import grep_command, reconstruct, render

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def hop(agent: str, host: str, ms: int, cid: str, mid: str, event: str, **kw) -> str:
    return json.dumps({"ts": (T0 + timedelta(milliseconds=ms)).isoformat(), "level": "info",
                       "agent": agent, "host": host, "msg": f"{agent} {event}",
                       "correlation_id": cid, "message_id": mid, "event": event, **kw})


@pytest.fixture
def fleet(tmp_path: Path):
    cid, m1, m2, m3 = (str(uuid.uuid4()) for _ in range(4))
    other = str(uuid.uuid4())
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "kyle.log").write_text(
        hop("kyle", "a", 0, cid, m1, "emitted", emitted_id=m1) + "\n"
        + hop("kyle", "a", 1, other, str(uuid.uuid4()), "emitted") + "\n")
    # Joey's hops sit in a rotated, compressed generation on host b.
    with gzip.open(b / "joey.log.2.gz", "wt") as fh:
        fh.write(hop("joey", "b", 5, cid, m1, "received") + "\n"
                 + hop("joey", "b", 7, cid, m1, "emitted", emitted_id=m2) + "\n")
    (b / "hrm.log").write_text(hop("hrm", "b", 20, cid, m3, "decided") + "\n")

    def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
        host = argv[-2].split("@")[1]
        if host == "down":
            return subprocess.CompletedProcess(argv, 255, "", "ssh: connect: No route to host")
        cmd = argv[-1].replace("/var/log/ark", str(tmp_path / host))
        return subprocess.run(["sh", "-c", cmd], **kw)

    hosts = [FleetHost("host-a", "a"), FleetHost("host-b", "b")]
    return hosts, run, cid, m2


@pytest.mark.requirement("AGENT_03")
def test_a_flow_split_across_hosts_comes_back_in_order(fleet) -> None:
    hosts, run, cid, _ = fleet
    correlation, hops, errors = reconstruct(hosts, cid, run)
    assert correlation == cid and errors == {}
    assert [(h.source, h.event) for h in hops] == [
        ("a/kyle", "emitted"), ("b/joey", "received"), ("b/joey", "emitted"),
        ("b/hrm", "decided")]
    out = io.StringIO()
    render(correlation, hops, out, as_json=True)
    rows = [json.loads(x) for x in out.getvalue().splitlines()[1:]]
    assert [r["since_previous_ms"] for r in rows] == [0.0, 5.0, 2.0, 13.0]
    assert [r["host"] for r in rows] == ["a", "b", "b", "b"]


@pytest.mark.requirement("AGENT_03")
def test_a_message_id_finds_its_whole_flow_and_a_dead_host_is_reported(fleet) -> None:
    hosts, run, cid, m2 = fleet
    correlation, hops, errors = reconstruct([*hosts, FleetHost("host-c", "down")], m2, run)
    assert correlation == cid
    assert len(hops) == 4  # the second round fetched the hops that never mention m2
    assert "No route" in errors["host-c"]


@pytest.mark.requirement("AGENT_03")
def test_an_unknown_id_is_unknown_everywhere(fleet) -> None:
    hosts, run, _, _ = fleet
    correlation, hops, errors = reconstruct(hosts, str(uuid.uuid4()), run)
    assert correlation is None and hops == [] and errors == {}


def test_the_id_is_quoted_for_the_remote_shell() -> None:
    assert "'a b; rm -rf /'" in grep_command("a b; rm -rf /")
