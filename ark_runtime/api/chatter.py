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


@dataclass(eq=False)
class Client:
    agents: frozenset[str]
    types: frozenset[str]
    batch: bool = False
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE))
    dropped: int = 0
    behind: int = 0

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


class Hub:
    def __init__(self, redis: Any, block_ms: int = 1000) -> None:
        self.redis, self.block_ms = redis, block_ms
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
            for stream, entries in reply or []:
                name = stream.decode() if isinstance(stream, bytes) else stream
                for entry_id, fields in entries:
                    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    ids[name] = eid
                    self.publish(summarise(name, eid, _text(fields)))

    async def serve(self, ws: WebSocket, session: Session) -> None:
        agents = frozenset(a for a in ws.query_params.get("agent", "").split(",") if a)
        types = frozenset(t for t in ws.query_params.get("type", "").split(",") if t)
        await ws.accept()
        client = Client(agents, types, batch=ws.query_params.get("batch") == "1")
        if not self.clients:
            self._start_id = f"{int(time.time() * 1000)}-0"
        self.clients.add(client)
        await ws.send_json({"type": "hello", "user": session.user, "queue": QUEUE,
                            "batch": client.batch})
        # Read the client side too, so a browser's close ends this within a second.
        receiver = asyncio.create_task(self._until_closed(ws))
        try:
            while not receiver.done():
                text = await _next(client.queue)
                if text is None:
                    continue
                if client.batch:
                    text = _batched(text, client.queue)
                if client.behind > MAX_DROPS:
                    await ws.close(code=1013, reason="too slow; reconnect")
                    return
                if client.dropped:  # tell the page how many it missed, then carry on
                    await ws.send_json({"type": "dropped", "count": client.dropped})
                    client.dropped = 0
                # asyncio.timeout, not wait_for: wait_for makes a Task per message (3.11).
                async with asyncio.timeout(5):
                    await ws.send_text(text)
        except (WebSocketDisconnect, TimeoutError, RuntimeError):
            pass
        finally:
            self.clients.discard(client)
            receiver.cancel()

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
