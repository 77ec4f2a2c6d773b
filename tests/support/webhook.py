"""A webhook receiver for Alertmanager on the lab bridge's address (LOG_03 e2e): records every
notification it is sent. Listens on the lab gateway only, never on a routable interface."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ark_ops.lab.config import gateway_address


class Receiver:
    def __init__(self) -> None:
        self.notifications: list[dict] = []
        self.lock = threading.Lock()
        self.url = ""

    def alerts(self, status: str, alertname: str, **labels: str) -> list[dict]:
        """Alerts received with that status, name and labels."""
        with self.lock:
            found = [a for n in self.notifications for a in n.get("alerts", [])]
        return [a for a in found if a.get("status") == status
                and a.get("labels", {}).get("alertname") == alertname
                and all(a["labels"].get(k) == v for k, v in labels.items())]


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                doc = json.loads(body)
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            with receiver.lock:
                receiver.notifications.append(doc)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer((gateway_address(), 0), Handler)
    receiver.url = f"http://{gateway_address()}:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
