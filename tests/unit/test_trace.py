"""AGENT_03: `ark trace` merges log files of several hosts (rotated and gzipped included)."""

from __future__ import annotations

import gzip
import json

import pytest

from ark_runtime.cli import main
from ark_runtime.trace import collect

CID = "11111111-1111-4111-8111-111111111111"
PLAN = "22222222-2222-4222-8222-222222222222"


def line(ts: str, agent: str, host: str, event: str, **kw) -> str:
    return json.dumps({"ts": ts, "agent": agent, "host": host, "event": event,
                       "msg": f"{agent} {event}", "correlation_id": CID, **kw}) + "\n"


@pytest.mark.requirement("AGENT_03")
def test_trace_merges_hosts_in_time_order(tmp_path, capsys, monkeypatch) -> None:
    a, b = tmp_path / "host-a", tmp_path / "host-b"
    a.mkdir()
    b.mkdir()
    (a / "kyle.log").write_text(line("2024-01-01T00:00:00.000001+00:00", "kyle", "a",
                                     "emitted", emitted_id=CID) + "not json\n")
    with gzip.open(a / "joey.log.1.gz", "wt") as fh:
        fh.write(line("2024-01-01T00:00:00.2+00:00", "joey", "a", "received"))
    (b / "kenny.log").write_text(
        line("2024-01-01T00:00:00.3+00:00", "kenny", "b", "emitted", emitted_id=PLAN)
        + json.dumps({"ts": "2024-01-01T00:00:00.1+00:00", "agent": "kenny",
                      "correlation_id": "other", "msg": "unrelated"}) + "\n")
    (b / "hrm.log").write_text(line("2024-01-01T00:00:00.4Z", "hrm", "b", "decided",
                                    message_id=PLAN))
    # Asked by a downstream message id, it finds the flow and shows all of it.
    correlation, hops = collect(PLAN, [a, b])
    assert correlation == CID
    assert [h.source for h in hops] == ["a/kyle", "a/joey", "b/kenny", "b/hrm"]

    monkeypatch.setenv("ARK_STATE_DIR", str(tmp_path / "state"))
    assert main(["trace", CID, "--log-dir", str(a), "--log-dir", str(b)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"trace {CID}: 4 hops")
    assert main(["trace", "not-an-id"]) == 64  # ExitCode.USAGE
    assert main(["trace", PLAN.replace("2", "3"), "--log-dir", str(a)]) == 1


@pytest.mark.requirement("AGENT_03")
def test_trace_expands_batch_lines(tmp_path) -> None:
    # Agents log one INFO line per committed batch listing every message's hop (no INFO line
    # per message); the trace must still show each hop of the flow.
    other = "33333333-3333-4333-8333-333333333333"
    batch = {"ts": "2024-01-01T00:00:00.5+00:00", "agent": "kenny", "host": "a",
             "event": "batch", "msg": "committed 3 hops", "correlation_id": None, "hops": [
                 {"event": "received", "correlation_id": CID, "message_id": CID,
                  "msg": "received market.bar from kyle"},
                 {"event": "emitted", "correlation_id": CID, "message_id": CID,
                  "emitted_id": PLAN, "msg": "emitted trade.plan to hrm"},
                 {"event": "received", "correlation_id": other, "message_id": other}]}
    (tmp_path / "kenny.log").write_text(json.dumps(batch) + "\n")
    correlation, hops = collect(PLAN, [tmp_path])
    assert correlation == CID
    assert [(h.source, h.event, h.message_id) for h in hops] == [
        ("a/kenny", "received", CID), ("a/kenny", "emitted", PLAN)]
    assert hops[1].ts == batch["ts"]
