"""AGENT_03: every log line is one JSON object carrying the trace ids."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from ark_runtime import logjson


@pytest.mark.requirement("AGENT_03")
def test_lines_are_json_with_context_ids(tmp_path, capsys) -> None:
    path = logjson.setup("joey", directory=tmp_path)
    log = logging.getLogger("ark.joey")
    log.info("outside")
    with logjson.context(correlation="c-1", message="m-1"):
        log.warning("inside %s", "flow", extra={"event": "received", "type": "market.bar"})
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("failed")
    logjson.log_at(log, 1_700_000_000.25, logging.INFO, "stamped")
    logjson.flush()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["msg"] for x in lines] == ["outside", "inside flow", "failed", "stamped"]
    assert lines[0]["correlation_id"] is None
    assert lines[1]["correlation_id"] == "c-1" and lines[1]["message_id"] == "m-1"
    assert lines[1]["event"] == "received" and lines[1]["agent"] == "joey"
    assert "ValueError: bad" in lines[2]["exc"]
    assert lines[3]["ts"] == "2023-11-14T22:13:20.250000+00:00"
    # The same lines go to stderr for journald.
    err = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [x["msg"] for x in err] == [x["msg"] for x in lines]
    for handler in logging.getLogger().handlers:
        handler.close()
    logging.getLogger().handlers.clear()


@pytest.mark.requirement("AGENT_03")
def test_unwritable_log_dir_falls_back_to_stderr(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert logjson.setup("kyle", directory=blocker / "sub") is None
    assert "log file unavailable" in capsys.readouterr().err
    logging.getLogger().handlers.clear()


@pytest.mark.requirement("AGENT_03")
def test_a_record_is_encoded_once_for_both_handlers(tmp_path, capsys, monkeypatch) -> None:
    # stderr and the file get the same line, but the JSON encoding (the costly part of a
    # batch line listing every hop) runs once per record, not once per handler.
    path = logjson.setup("hrm", directory=tmp_path)
    calls = []
    real = logjson.JsonFormatter._format
    monkeypatch.setattr(logjson.JsonFormatter, "_format",
                        lambda self, record: calls.append(record) or real(self, record))
    logging.getLogger("ark.hrm").info("batch", extra={"event": "batch", "hops": [{"a": 1}]})
    logjson.flush()
    assert len(calls) == 1
    assert path.read_text().splitlines() == capsys.readouterr().err.splitlines()
    assert json.loads(path.read_text())["hops"] == [{"a": 1}]
    for handler in logging.getLogger().handlers:
        handler.close()
    logging.getLogger().handlers.clear()


@pytest.mark.requirement("AGENT_03")
def test_unusual_values_still_give_one_json_line(tmp_path) -> None:
    # msgspec encodes the line; what it cannot encode natively is str()'d, and what it
    # refuses (an int past 64 bits) falls back to json, so a line is never lost.
    path = logjson.setup("kenny", directory=tmp_path)
    log = logging.getLogger("ark.kenny")
    log.info("odd", extra={"path": tmp_path, "big": 2**70, "text": "é€"})
    log.info("plain", extra={"path": tmp_path, "when": datetime(2024, 1, 2, tzinfo=UTC)})
    logjson.flush()
    first, second = (json.loads(x) for x in path.read_text().splitlines())
    assert first["big"] == 2**70 and first["path"] == str(tmp_path) and first["text"] == "é€"
    assert second["path"] == str(tmp_path) and second["when"].startswith("2024-01-02")
    for handler in logging.getLogger().handlers:
        handler.close()
    logging.getLogger().handlers.clear()
