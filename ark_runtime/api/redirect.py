"""The console's plain-HTTP port when it serves HTTPS (issue #21): every request is answered
with a permanent redirect to the same path over HTTPS, and nothing else. The Host header must
name this console (as on the HTTPS side: DNS rebinding), so the redirect never points a
browser at a name an attacker chose."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from urllib.parse import quote

import uvicorn

Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]


def host_name(scope: dict) -> str:
    """The Host header without its port, lower case ('' when there is none)."""
    host = next((v for k, v in scope.get("headers", ()) if k == b"host"), b"")
    text = host.decode("latin-1")
    name = text.split("]", 1)[0] + "]" if text.startswith("[") else text.rsplit(":", 1)[0]
    return name.lower()


def redirect_app(https_port: int, allowed_hosts: frozenset[str]):
    async def app(scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            return
        name = host_name(scope)
        if name not in allowed_hosts:
            status, headers = 400, []
        else:
            # The path as the client sent it; the query string untouched.
            path = quote(scope.get("path", "/"), safe="/%:@!$&'()*+,;=-._~")
            query = scope.get("query_string", b"").decode("latin-1")
            location = f"https://{name}:{https_port}{path}" + (f"?{query}" if query else "")
            status, headers = 308, [(b"location", location.encode("latin-1"))]
        await send({"type": "http.response.start", "status": status, "headers": [
            *headers, (b"content-length", b"0"), (b"cache-control", b"no-store"),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": b""})

    return app


class RedirectServer(uvicorn.Server):
    """uvicorn for the redirect port, run beside the console's own server in its loop; the
    console's server owns the signals (SIGTERM stops both)."""

    @contextmanager
    def capture_signals(self):
        yield
