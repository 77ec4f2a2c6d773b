"""`ark metrics`: the exporter run by ark-metrics.service.

Serves /metrics (prometheus_client's own HTTP server and text format) on the host's address,
never a wildcard; READY=1 once the socket listens, WATCHDOG=1 while it runs.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
import threading
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, start_http_server

from ark_runtime import logjson, pipeline, settings, systemd
from ark_runtime.exitcodes import ExitCode
from ark_runtime.host import layout
from ark_runtime.metrics.base import Guarded, Source
from ark_runtime.metrics.build import BuildSource
from ark_runtime.metrics.host import HostSource
from ark_runtime.metrics.state import StateSource, StoreSource
from ark_runtime.metrics.units import UnitsSource

DEFAULT_UNITS = list(pipeline.UNITS)


class ListenError(ValueError):
    """A --listen value the exporter refuses; the message names the problem."""


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ListenError(f"--listen {value!r}: expected ADDRESS:PORT, e.g. 10.0.0.5:9101")
    try:
        if ipaddress.ip_address(host).is_unspecified:
            raise ListenError(f"--listen {value!r}: bind the host's own address, not a "
                              "wildcard (metrics are for the monitoring network only)")
    except ValueError as exc:
        if isinstance(exc, ListenError):
            raise
        # a host name: resolved by the server; still refuse names for a wildcard
    return host, int(port)


def build_registry(env: Mapping[str, str], units: list[str], bus: bool) -> CollectorRegistry:
    sources: list[Source] = [
        BuildSource(),
        HostSource({"state": layout.state_dir(env), "log": layout.log_dir(env)}),
        UnitsSource(units),
        StateSource(env),
        StoreSource(env),
    ]
    if bus:
        from ark_runtime.bus.clients import sentinel_replicas
        from ark_runtime.bus.streams import connect
        from ark_runtime.config import redis_settings
        from ark_runtime.metrics.bus import BusSource

        settings = redis_settings()
        sources.append(BusSource(connect(settings, block_ms=0),
                                 lambda: sentinel_replicas(settings)))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Guarded(sources))
    return registry


def _log_to_stderr() -> None:
    """JSON lines to the journal only: the exporter's user cannot (and need not) write
    /var/log/ark, and its few lines (a source failing) belong with the unit's status."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logjson.JsonFormatter("metrics"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def run(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.listen)
    except ListenError as exc:
        print(f"ark metrics: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    _log_to_stderr()
    registry = build_registry(settings.declared(), args.unit or DEFAULT_UNITS, args.bus)
    try:
        httpd, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        print(f"ark metrics: cannot listen on {host}:{port}: {exc.strerror or exc}; "
              f"run `ark ports check --ports metrics={port}` to see who holds it",
              file=sys.stderr)
        return ExitCode.UNAVAILABLE
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    systemd.notify("READY=1")
    systemd.notify(f"STATUS=serving /metrics on {host}:{port}")
    interval = systemd.watchdog_interval() or 5.0
    while not stop.wait(interval):
        systemd.notify("WATCHDOG=1")
    systemd.notify("STOPPING=1")
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)
    return ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("metrics", help="serve Prometheus /metrics (run by ark-metrics.service)")
    p.add_argument("--listen", required=True, metavar="ADDRESS:PORT",
                   help="the host's own address and ARK_METRICS_PORT (never 0.0.0.0)")
    p.add_argument("--unit", action="append", metavar="UNIT",
                   help="a unit to report (repeatable; default the API and every agent)")
    p.add_argument("--bus", action="store_true",
                   help="also report Redis and the streams (the Redis host's exporter does)")
    p.set_defaults(func=run)
