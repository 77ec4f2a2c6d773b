"""AGENT_04: `invoke risk` shows each host's view of HRM's risk state, read from Redis on the
host (ssh runs `ark hrm risk --json`; the runner is faked here, the parsing is real)."""

from __future__ import annotations

import io
import json
import subprocess

import pytest

from ark_ops.fleet import risk

pytestmark = pytest.mark.requirement("AGENT_04")


class Host:
    def __init__(self, name: str) -> None:
        self.name, self.port, self.key_file, self.user, self.address = name, 22, None, "u", name
        self.become = type("B", (), {"scrub": staticmethod(lambda s: s.replace("pw", "***")),
                                     "stdin_prefix": staticmethod(lambda: "")})()


def state(tripped: bool) -> dict:
    return {"session": "2026-03-02", "daily_pnl": -0.031, "realised_pnl": -0.031,
            "open_pnl": -0.00425,
            "loss_streak": 3, "positions_open": 0, "positions_closed": 3,
            "exposure": {"total": 0.0, "per_symbol": {}},
            "breakers": {"daily_loss": {"tripped": tripped}, "loss_streak": {"tripped": False}}}


def test_each_host_is_shown_and_a_trip_anywhere_exits_1(monkeypatch) -> None:
    answers = {"a": (1, json.dumps(state(True)), ""), "b": (69, "", "redis pw refused")}

    def fake_run(argv, **kwargs):
        host = next(h for h in answers if h in argv)
        rc, out, err = answers[host]
        return subprocess.CompletedProcess(argv, rc, out, err)

    monkeypatch.setattr(risk, "ssh_argv", lambda host, cmd: ["ssh", host.name, cmd])
    states = risk.read([Host("a"), Host("b")], run=fake_run)
    out = io.StringIO()
    assert risk.render(states, out) is True
    text = out.getvalue()
    assert "TRIPPED daily_loss" in text and "closed 3" in text
    assert "b                unknown: redis *** refused" in text  # scrubbed, still shown
    assert "realised -0.03100 open pnl -0.00425" in text
    assert risk.render({"a": state(False)}, io.StringIO()) is False
    older = state(False)
    del older["open_pnl"]  # published by an HRM from before the figure
    out = io.StringIO()
    risk.render({"a": older}, out)
    assert "open pnl unknown" in out.getvalue()
