"""AGENT_04 / UI_02: the console shows HRM's risk state from Redis (no store on this host)
and resets a breaker as an audited admin action that queues `hrm.breaker_reset` for HRM."""

from __future__ import annotations

import json

import pytest
from conftest import wait_for
from console_app import audit, console_client, sign_in

from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.keys import inbox, risk_state_key

pytestmark = pytest.mark.requirement("AGENT_04")


@pytest.fixture
def console(redis_server, r, tmp_path, monkeypatch):
    with console_client(redis_server, tmp_path, monkeypatch, login_limit=5) as client:
        yield client


def test_the_console_reads_the_published_state_and_resets_as_an_audited_admin(console, r):
    sign_in(console, "victor")
    assert console.get("/api/status").json()["pipeline"]["breakers"] is None  # none yet
    published = {"v": 1, "breakers": {"daily_loss": {"tripped": True, "value": 0.031,
                                                     "limit": 0.03, "severity": "error"}}}
    r.set(risk_state_key(), json.dumps(published))
    # The status is shared for up to a second between callers: wait for the next one.
    shown = wait_for(lambda: console.get("/api/status").json()["pipeline"]["breakers"], 10,
                     interval=0.2, what="the published state on the console")
    assert shown["breakers"]["daily_loss"]["tripped"] is True
    # A viewer may not reset; an admin may, with a reason, and it is audited.
    assert console.post("/api/admin/breakers/daily_loss/reset",
                        json={"reason": "x"}).status_code == 403
    csrf = sign_in(console, "alice")
    h = {"X-CSRF-Token": csrf}
    assert console.post("/api/admin/breakers/nope/reset", json={"reason": "x"},
                        headers=h).status_code == 422
    assert console.post("/api/admin/breakers/daily_loss/reset", json={"reason": ""},
                        headers=h).status_code == 422
    resp = console.post("/api/admin/breakers/daily_loss/reset",
                        json={"reason": "feed replayed twice"}, headers=h)
    assert resp.status_code == 200 and resp.json()["result"] == "ok"
    [(_id, fields)] = r.xrange(inbox("hrm"))
    env = Envelope.from_fields(fields)
    assert (env.type, env.to_agent) == ("hrm.breaker_reset", "hrm")
    assert env.payload == {"breaker": "daily_loss", "reason": "feed replayed twice",
                           "by": "operator:alice"}
    records = [(a["who"], a["action"], a["args"], a["result"]) for a in audit(console.root)]
    assert ("alice", "hrm.breaker_reset",
            {"breaker": "daily_loss", "reason": "feed replayed twice"}, "ok") in records
