"""Issue 21's smaller findings (vuln 8), each against the real app and a real redis-server."""

from __future__ import annotations

import json

import pytest
from console_app import PASSWORDS, audit, console_client, make_app, sign_in
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.registry import ControlResume
from ark_runtime.bus.streams import DEAD_STREAM, inbox


@pytest.fixture
def console(redis_server, r, tmp_path, monkeypatch):
    with console_client(redis_server, tmp_path, monkeypatch, login_limit=50) as client:
        yield client




@pytest.mark.requirement("SEC_02")
def test_a_non_ascii_csrf_token_is_a_403_not_a_500(console):
    sign_in(console, "alice")
    resp = console.post("/api/admin/pause", json={}, headers={"X-CSRF-Token": b"\xff"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "csrf_failed"


@pytest.mark.requirement("SEC_02")
def test_head_health_answers_like_get(console):
    resp = console.head("/health")
    assert resp.status_code == 200 and resp.content == b""


@pytest.mark.requirement("SEC_02")
def test_authenticated_answers_are_not_stored(console):
    sign_in(console, "victor")
    for path in ("/", "/api/me", "/api/status", "/login"):
        assert console.get(path).headers["cache-control"] == "no-store", path


@pytest.mark.requirement("SEC_02")
def test_login_from_another_site_is_refused(console):
    form = {"username": "alice", "password": PASSWORDS["alice"]}
    forged = console.post("/login", data=form, headers={"Origin": "https://evil.example"},
                          follow_redirects=False)
    assert forged.status_code == 403 and "set-cookie" not in forged.headers
    for origin in ("null", "https://testserver"):  # sandboxed frame; wrong scheme
        assert console.post("/login", data=form, headers={"Origin": origin},
                            follow_redirects=False).status_code == 403
    own = console.post("/login", data=form, headers={"Origin": "http://testserver"},
                       follow_redirects=False)
    assert own.status_code == 303


@pytest.mark.requirement("UI_03")
def test_websocket_origin_must_match_scheme_too(console):
    sign_in(console, "victor")
    with pytest.raises(WebSocketDisconnect) as refused, console.websocket_connect(
            "/ws/chatter", headers={"Origin": "https://testserver"}) as ws:
        ws.receive_json()
    assert refused.value.code == 1008
    with console.websocket_connect("/ws/chatter", headers={"Origin": "http://testserver"}) as ws:
        assert ws.receive_json()["type"] == "hello"


@pytest.mark.requirement("SEC_02")
def test_replay_is_all_or_nothing(console, r):
    csrf = sign_in(console, "alice")
    env = Envelope.new("control.resume", ControlResume(origins=["x"], by="t"),
                       from_agent="operator", to_agent="bus")
    r.delete(DEAD_STREAM, inbox("joey"))
    r.xadd(DEAD_STREAM, {"reason": "t", "agent": "joey", "source_stream": inbox("joey"),
                         "original": json.dumps(env.to_fields())})
    bad = r.xadd(DEAD_STREAM, {"reason": "t", "agent": "joey", "source_stream": inbox("joey"),
                               "original": "not json"})
    resp = console.post("/api/admin/dead-letters/replay", json={},
                        headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 409, resp.text
    assert bad in resp.json()["error"]["message"]
    assert r.xlen(inbox("joey")) == 0 and r.xlen(DEAD_STREAM) == 2  # nothing moved
    assert audit(console.root)[-1]["result"] == "failed"


@pytest.mark.requirement("SEC_03")
def test_refused_admin_attempts_are_audited(console):
    csrf = sign_in(console, "victor")
    assert console.post("/api/admin/pause", json={}, headers={"X-CSRF-Token": csrf}) \
        .status_code == 403
    assert console.post("/api/admin/pause", json={}).status_code == 403  # no token
    console.cookies.clear()
    csrf = sign_in(console, "alice")
    bad = console.post("/api/admin/dead-letters/purge", json={"limit": 0},
                       headers={"X-CSRF-Token": csrf})
    assert bad.status_code == 422
    refused = [(a["who"], a["args"]["path"], a["args"]["status"], a["result"])
               for a in audit(console.root) if a["action"] == "request"]
    assert refused == [("victor", "/api/admin/pause", 403, "refused"),
                       ("victor", "/api/admin/pause", 403, "refused"),
                       ("alice", "/api/admin/dead-letters/purge", 422, "refused")]


@pytest.mark.requirement("SEC_03")
def test_a_server_error_in_an_admin_action_is_audited(redis_server, tmp_path, monkeypatch):
    class Broken:
        async def status(self):
            raise ZeroDivisionError("boom")

        async def control(self, unit, verb):
            raise ZeroDivisionError("boom")

    app, _ = make_app(redis_server.port, redis_server.password, tmp_path, monkeypatch,
                      units=Broken())
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        csrf = sign_in(c, "alice")
        resp = c.post("/api/admin/recover", json={"reason": "x"},
                      headers={"X-CSRF-Token": csrf})
        assert resp.status_code == 500 and "boom" not in resp.text
    failed = [a for a in audit(tmp_path) if a["action"] == "request"]
    assert [(a["who"], a["result"], a["args"]["status"]) for a in failed] == \
        [("alice", "failed", 500)]


@pytest.mark.requirement("SEC_02")
def test_a_demoted_or_removed_operator_loses_their_session(console, tmp_path):
    """Issue 21, vuln 8: sessions live on the server with user and role; operators.json
    changing ends the sessions of whoever it demotes or removes (no restart)."""
    from ark_runtime.api.operators import operators_path

    state = console.app.state.auth
    csrf = sign_in(console, "alice")
    assert console.post("/api/admin/pause", json={}, headers={"X-CSRF-Token": csrf}) \
        .status_code == 200
    # Re-deploy operators.json with alice as a viewer and victor removed.
    path = operators_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"name": o.name, "role": "viewer",
                                 "password_hash": o.password_hash}
                                for o in state.operators.values() if o.name == "alice"]))
    state.operators_file = path
    state.refresh(every_s=0)
    assert console.get("/api/me").status_code == 401
    assert console.post("/api/admin/pause", json={}, headers={"X-CSRF-Token": csrf}) \
        .status_code == 401
    console.cookies.clear()
    assert console.post("/login", data={"username": "victor",
                                         "password": PASSWORDS["victor"]}).status_code == 401
    sign_in(console, "alice")
    assert console.get("/api/me").json()["role"] == "viewer"


@pytest.mark.requirement("SEC_02")
def test_an_idle_session_ends(console):
    sign_in(console, "victor")
    assert console.get("/api/me").status_code == 200
    sessions = console.app.state.auth.sessions
    for live in sessions._live.values():
        live.seen -= sessions.idle_s  # as if the last request was idle_s ago
    assert console.get("/api/me").status_code == 401


@pytest.mark.requirement("SEC_02")
def test_a_foreign_host_name_is_refused(console):
    """Issue 21, vuln 8 (DNS rebinding): a request whose Host is not one of this console's
    names is refused before anything else, pages, API and WebSocket alike."""
    sign_in(console, "victor")
    for path in ("/api/me", "/login", "/health"):
        resp = console.get(path, headers={"Host": "evil.example"})
        assert resp.status_code == 400, path
    assert console.get("/api/me", headers={"Host": "testserver:8101"}).status_code == 200
    with pytest.raises(WebSocketDisconnect), console.websocket_connect(
            "/ws/chatter", headers={"Host": "evil.example"}) as ws:
        ws.receive_json()
