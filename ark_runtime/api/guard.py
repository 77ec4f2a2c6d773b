"""The console's front door for request bodies, ahead of the framework (pure ASGI).

FastAPI reads and parses a JSON body before any dependency runs, so without this an
anonymous client could make the API buffer and parse any amount of data before the auth
check answered 401. Here, before the app sees the request:

1. a declared Content-Length over MAX_BODY is refused with 413 at once (nothing read, no
   session looked at);
2. a request that carries a body to anything but a public form (/login) needs a live
   session, else 401 — its body is never read;
3. the body is read here, at most MAX_BODY bytes (a chunked body that grows past it gets
   413), and handed to the app from memory.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection

from ark_runtime.api.errors import body as error_body

# The largest body any route takes: the login form (64 + 1024 characters) and {"reason": 500
# characters} URL- or JSON-escaped fit many times over.
MAX_BODY = 16 * 1024
PUBLIC_BODIES = frozenset({"/login"})

Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]


class BodyTooLarge(Exception):
    pass


def _header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


def declared_length(scope: dict) -> int | None:
    """Content-Length as a number; None when absent; -1 when it is not a number."""
    raw = _header(scope, b"content-length")
    if raw is None:
        return None
    return int(raw) if raw.strip().isdigit() else -1


def has_body(scope: dict) -> bool:
    length = declared_length(scope)
    return bool(length) or _header(scope, b"transfer-encoding") is not None


async def refuse(send: Send, status: int, message: str, *, close: bool = True,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(error_body(status, message)).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(payload)).encode()),
               (b"cache-control", b"no-store"), *(extra or [])]
    if close:  # the client may still be sending: do not keep reading it
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def read_limited(receive: Receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away while sending its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that yields the buffered body once, then defers to the real one (for the
    disconnect the app may wait on)."""
    sent = False

    async def _receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return _receive


async def guard_body(app: Callable, sessions, scope: dict, receive: Receive, send: Send,
                     *, limit: int = MAX_BODY) -> None:
    """Run `app` for an HTTP request that carries a body, applying rules 1-3 above."""
    length = declared_length(scope)
    if length == -1:
        await refuse(send, 400, "Content-Length: expected a number of bytes")
        return
    if length is not None and length > limit:
        await refuse(send, 413, f"request body over {limit} bytes")
        return
    if scope["path"] not in PUBLIC_BODIES and sessions.read(HTTPConnection(scope)) is None:
        await refuse(send, 401, "sign in first (POST /login)")
        return
    try:
        body = await read_limited(receive, limit)
    except BodyTooLarge:
        await refuse(send, 413, f"request body over {limit} bytes")
        return
    except ConnectionResetError:
        return
    await app(scope, replay(body, receive), send)
