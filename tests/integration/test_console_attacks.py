"""Attacks on the console that once worked (issue 21), each against a real uvicorn and a real
redis-server: an HTTP client with no session, a viewer, a slow WebSocket reader. Each test
failed before its fix."""

from __future__ import annotations

import socket

import httpx
import pytest
from console_app import PASSWORDS, make_app
from console_server import serving

from ark_runtime.api.guard import MAX_BODY


@pytest.fixture
def server(redis_server, tmp_path, monkeypatch):
    app, _units = make_app(redis_server.port, redis_server.password, tmp_path, monkeypatch,
                           login_limit=5)
    with serving(app) as (counting, port):
        yield counting, f"http://127.0.0.1:{port}", port


def signed_in(base: str, user: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base, timeout=20)
    resp = client.post("/login", data={"username": user, "password": PASSWORDS[user]})
    assert resp.status_code == 303, resp.text
    return client, client.get("/api/me").json()["csrf"]


def chunks(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size


@pytest.mark.requirement("SEC_02")
def test_declared_oversize_body_is_refused_before_it_is_sent(server):
    """Vulnerability 4: a 150 MB Content-Length is answered 413 after its headers, not read."""
    _counting, _base, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /api/admin/panic HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 157286400\r\n\r\n"
                     + b"{" * 1024)
        try:
            head = sock.recv(4096)
        except TimeoutError:
            pytest.fail("the server waited for a 150 MB body instead of refusing it")
    assert head.startswith(b"HTTP/1.1 413"), head[:200]


@pytest.mark.requirement("SEC_02")
def test_anonymous_chunked_body_is_never_read(server):
    """Vulnerability 4: without a session the body is not read at all (401 first)."""
    counting, base, _port = server
    resp = httpx.post(base + "/api/admin/panic", content=chunks(4 * 1024 * 1024),
                      headers={"content-type": "application/json"}, timeout=20)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthenticated"
    assert counting.body_bytes == 0


@pytest.mark.requirement("SEC_02")
def test_signed_in_chunked_body_stops_at_the_limit(server):
    counting, base, _port = server
    client, csrf = signed_in(base, "alice")
    before = counting.body_bytes
    try:
        resp = client.post("/api/admin/panic", content=chunks(4 * 1024 * 1024),
                           headers={"content-type": "application/json",
                                    "x-csrf-token": csrf})
    except httpx.TransportError:
        resp = None  # the server may close while we are still sending: also a refusal
    assert resp is None or resp.status_code == 413
    # What uvicorn had buffered when the limit was crossed (its flow control pauses reading at
    # a 64 KiB high-water mark) may be handed over too; never the 4 MB.
    assert counting.body_bytes - before <= MAX_BODY + 256 * 1024
    # A body within the limit still works.
    ok = client.post("/api/admin/pause", json={"reason": "r" * 400},
                     headers={"x-csrf-token": csrf})
    assert ok.status_code == 200, ok.text
