"""The pipeline's commands use the one exit-code table and say what went wrong in one
sentence, never a traceback (ark_runtime/exitcodes.py, docs/AGENT_PROTOCOL.md)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ark_runtime.cli import main as ark_main
from ark_runtime.exitcodes import ExitCode
from ark_runtime.protocol_doc import render

REPO = Path(__file__).resolve().parents[2]
ROLE_TEMPLATES = REPO / "roles" / "ark_runtime" / "templates"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.mark.parametrize("argv", [["errors", "status"], ["errors", "list"], ["dead"],
                                  ["errors", "clear", "--reason", "x"]])
def test_redis_down_is_69_with_one_sentence(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ARK_REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("ARK_REDIS_PORT", str(closed_port()))
    assert ark_main(argv) == ExitCode.UNAVAILABLE == 69
    err = capsys.readouterr().err
    assert "cannot reach Redis" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_bad_settings_are_78_naming_the_variable_without_its_value(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ARK_REDIS_PASSWORD", "zq-too-short")
    assert ark_main(["errors", "status"]) == ExitCode.CONFIG == 78
    err = capsys.readouterr().err
    assert "ARK_REDIS_PASSWORD" in err and "zq-too-short" not in err


def test_unknown_agent_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert ark_main(["agent", "mallory"]) == ExitCode.USAGE == 64
    assert "unknown agent" in capsys.readouterr().err


def test_a_joey_shard_past_the_count_is_78_before_it_connects(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # A unit left behind by a larger ARK_JOEY_SHARDS: refused as config, never a critical
    # error on the bus (nothing listens on the Redis port, and that is not what it says).
    monkeypatch.setenv("ARK_JOEY_SHARDS", "2")
    monkeypatch.setenv("ARK_REDIS_PORT", str(closed_port()))
    assert ark_main(["agent", "joey-2"]) == ExitCode.CONFIG == 78
    err = capsys.readouterr().err
    assert "no shard 2" in err and "Traceback" not in err


@pytest.mark.requirement("AGENT_01")
def test_protocol_doc_prints_the_whole_table() -> None:
    text = render()
    for code in ExitCode:
        assert f"| {code.value} | `{code.name}` | {code.meaning} |" in text


def test_units_do_not_restart_on_codes_that_would_fail_again() -> None:
    supervision = (ROLE_TEMPLATES / "systemd/_supervision.j2").read_text()
    line = next(ln for ln in supervision.splitlines() if ln.startswith("RestartPreventExit"))
    codes = {int(c) for c in line.split("=", 1)[1].split()}
    assert codes == {ExitCode.USAGE, ExitCode.TEMPFAIL, ExitCode.CONFIG}


def test_api_with_bad_settings_is_78_without_the_secret(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ARK_API_PORT", "99999")
    monkeypatch.setenv("ARK_REDIS_URL", "http://:zq-url-secret@x")
    assert ark_main(["api"]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert "ARK_API_PORT" in err and "ARK_REDIS_URL" in err and "zq-url-secret" not in err
