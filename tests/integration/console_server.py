"""The console served by a real uvicorn on loopback, configured as `ark api` configures it,
for attacks that need a real HTTP connection: raw sockets, chunked bodies, WebSockets that
never read. `Counting` sits between uvicorn and the app and counts the body bytes the app
side pulled off the connection."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from conftest import free_port, wait_for

from ark_runtime.api.server import server_config


@dataclass
class Counting:
    app: object
    body_bytes: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def state(self):
        return self.app.state

    async def __call__(self, scope, receive, send):
        async def counted():
            message = await receive()
            if message.get("type") == "http.request":
                self.body_bytes += len(message.get("body", b""))
            return message

        self.requests += 1
        await self.app(scope, counted, send)


@contextmanager
def serving(app, **config):
    counting = Counting(app)
    port = free_port()
    # The API's own uvicorn settings (server.server_config), quieter and quicker to stop.
    server = uvicorn.Server(server_config(counting, "127.0.0.1", port, log_level="error",
                                          timeout_graceful_shutdown=2, **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 15, what="uvicorn to listen")
    try:
        yield counting, port
    finally:
        server.should_exit = True
        thread.join(10)
