"""UI_03 chatter feed: live agent messages from the Redis streams over a WebSocket.

One reader task per API process does XREAD on every pipeline and side stream and fans each
message out to the connected clients. Each client has a small bounded queue: when it is full
the message is dropped for that client only (and counted); a client that keeps falling
behind is disconnected (close code 1013). So a slow browser never slows the reader, the
other clients, or the pipeline (the reader only reads; agents never wait on it).

A client that asks for `?batch=1` (the console page does) gets whatever is queued for it as
one JSON array per frame, up to BATCH messages: under load that is one send per client per
XREAD instead of one per message, the server's main cost per delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ark_runtime.api.sessions import Session
from ark_runtime.bus.registry import PIPELINE
from ark_runtime.bus.streams import SIDE_STREAMS, inbox

log = logging.getLogger("ark.api.chatter")
STREAMS = tuple(inbox(a) for a in PIPELINE) + SIDE_STREAMS
QUEUE = 256
MAX_DROPS = 1000  # dropped in a row before a client is cut off
BATCH = 64  # messages per frame at most, for a client that asked for batches
SEND_TIMEOUT_S = 5.0  # a frame the client does not take within this: it is aborted
# Kernel send buffer per chatter socket: a client that stops reading holds at most this
# (autotuning would let each grow to tcp_wmem's max, megabytes; issue 21 vuln 5).
SNDBUF = 128 * 1024
PER_OPERATOR = 8  # chatter sockets per operator
TOTAL = 256  # chatter sockets in all
YIELD_EVERY = 50  # fan-out yields to the event loop after this many messages (HTTP first)


@dataclass(eq=False)
class Client:
    agents: frozenset[str]
    types: frozenset[str]
    batch: bool = False
    user: str = ""
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE))
    dropped: int = 0
    behind: int = 0
    ended: str = ""  # why the session ended (logout, expiry, revocation): close at once

    def wants(self, msg: dict[str, Any]) -> bool:
        if self.agents and not ({msg.get("from"), msg.get("to")} & self.agents):
            return False
        return not self.types or msg.get("type") in self.types


def summarise(stream: str, entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    msg: dict[str, Any] = {"stream": stream, "id": entry_id, "type": fields.get("type"),
                           "correlation_id": fields.get("correlation_id")}
    try:
        env = json.loads(fields.get("envelope") or "{}")
    except ValueError:
        env = {}
    if isinstance(env, dict):
        msg.update({"from": env.get("from_agent"), "to": env.get("to_agent"),
                    "type": env.get("type", msg["type"]), "ts": env.get("timestamp"),
                    "message_id": env.get("message_id"), "payload": env.get("payload")})
    if stream.endswith(":dead"):
        msg.update({"type": "dead", "from": fields.get("agent"), "reason": fields.get("reason")})
    return msg


def _abort(ws: WebSocket) -> None:
    """Drop the TCP connection at once (RST): a close would wait for the client to read
    what is queued — forever, for a client that never reads — holding the buffers."""
    transport = ws.scope.get("ark.transport")
    if transport is not None:
        transport.abort()


def tune_socket(transport: Any) -> None:
    """A small fixed kernel send buffer and write-buffer limits for a chatter socket."""
    import socket

    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    with contextlib.suppress(AttributeError, NotImplementedError):
        transport.set_write_buffer_limits(high=64 * 1024)


class Hub:
    def __init__(self, redis: Any, block_ms: int = 1000, *, per_operator: int = PER_OPERATOR,
                 total: int = TOTAL) -> None:
        self.redis, self.block_ms = redis, block_ms
        self.per_operator, self.total = per_operator, total
        self.aborted = 0  # clients cut off for being too slow (a counter for tests/metrics)
        self.clients: set[Client] = set()
        self._task: asyncio.Task | None = None
        # Where the reader starts when the first client joins: that client's join time, so
        # whatever is published after its "hello" reaches it (no race with the reader).
        self._start_id = "$"

    def start(self) -> None:
        self._task = asyncio.create_task(self._read_forever())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def refusal(self, user: str) -> str | None:
        """Why a new socket for `user` is refused, or None."""
        if len(self.clients) >= self.total:
            return "too many chatter clients"
        if sum(1 for c in self.clients if c.user == user) >= self.per_operator:
            return f"at most {self.per_operator} chatter sockets per operator"
        return None

    def publish(self, msg: dict[str, Any]) -> None:
        text = None  # serialised once, for every client that wants it
        for client in list(self.clients):
            if not client.wants(msg):
                continue
            text = text or json.dumps(msg, separators=(",", ":"), default=str)
            try:
                client.queue.put_nowait(text)
                client.behind = 0
            except asyncio.QueueFull:
                client.dropped += 1
                client.behind += 1

    async def _read_forever(self) -> None:
        ids: dict[str, str] | None = None
        while True:
            if not self.clients:  # nobody listening: do not read at all
                await asyncio.sleep(0.1)
                ids = None
                continue
            if ids is None:
                ids = dict.fromkeys(STREAMS, self._start_id)
            try:
                reply = await self.redis.xread(ids, block=self.block_ms, count=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: retry, the page shows the gap
                log.warning("chatter reader: %s", type(exc).__name__)
                await asyncio.sleep(1)
                continue
            done = 0
            for stream, entries in reply or []:
                name = stream.decode() if isinstance(stream, bytes) else stream
                for entry_id, fields in entries:
                    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    ids[name] = eid
                    self.publish(summarise(name, eid, _text(fields)))
                    done += 1
                    if done % YIELD_EVERY == 0:  # let HTTP requests in between
                        await asyncio.sleep(0)

    async def serve(self, ws: WebSocket, session: Session, sessions: Any = None) -> None:
        agents = frozenset(a for a in ws.query_params.get("agent", "").split(",") if a)
        types = frozenset(t for t in ws.query_params.get("type", "").split(",") if t)
        refused = self.refusal(session.user)
        if refused:
            await ws.close(code=1013, reason=refused)
            return
        client = Client(agents, types, batch=ws.query_params.get("batch") == "1",
                        user=session.user)

        def end(reason: str) -> None:
            client.ended = reason

        if sessions is not None and not sessions.attach(session, end):
            await ws.close(code=1008, reason="sign in first")
            return
        await ws.accept()
        tune_socket(ws.scope.get("ark.transport"))
        if not self.clients:
            self._start_id = f"{int(time.time() * 1000)}-0"
        self.clients.add(client)
        try:
            await self._serve(ws, session, client)
        finally:
            self.clients.discard(client)
            if sessions is not None:
                sessions.detach(session, end)

    async def _serve(self, ws: WebSocket, session: Session, client: Client) -> None:
        await ws.send_json({"type": "hello", "user": session.user, "queue": QUEUE,
                            "batch": client.batch})
        # Read the client side too, so a browser's close ends this within a second.
        receiver = asyncio.create_task(self._until_closed(ws))
        try:
            while not receiver.done():
                if client.ended:  # logout, expiry or revocation of its session
                    async with asyncio.timeout(SEND_TIMEOUT_S):
                        await ws.close(code=1008, reason=client.ended[:100])
                    _abort(ws)
                    return
                text = await _next(client.queue)
                if text is None:
                    continue
                if client.batch:
                    text = _batched(text, client.queue)
                if client.behind > MAX_DROPS:  # reads, but far too slowly
                    self._cut_off(ws)
                    return
                # asyncio.timeout, not wait_for: wait_for makes a Task per message (3.11).
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    if client.dropped:  # tell the page how many it missed, then carry on
                        await ws.send_json({"type": "dropped", "count": client.dropped})
                        client.dropped = 0
                    await ws.send_text(text)
        except TimeoutError:
            self._cut_off(ws)  # stays behind past the bound: abort, do not wait on it
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            receiver.cancel()

    def _cut_off(self, ws: WebSocket) -> None:
        self.aborted += 1
        log.warning("chatter client cut off: too slow")
        _abort(ws)

    @staticmethod
    async def _until_closed(ws: WebSocket) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass

async def _next(queue: asyncio.Queue) -> str | None:
    """The next message: at once when one is queued (the common case under load, no timer),
    else waiting up to a second so the loop can notice a closed client."""
    try:
        return queue.get_nowait()
    except asyncio.QueueEmpty:
        pass
    try:
        async with asyncio.timeout(1.0):
            return await queue.get()
    except TimeoutError:
        return None


def _batched(first: str, queue: asyncio.Queue) -> str:
    """`first` and whatever else is queued already (up to BATCH) as one JSON array."""
    texts = [first]
    while len(texts) < BATCH:
        try:
            texts.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            break
    return "[" + ",".join(texts) + "]"


def _text(fields: dict) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k):
            (v.decode(errors="replace") if isinstance(v, bytes) else v)
            for k, v in fields.items()}
