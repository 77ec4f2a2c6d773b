"""`ark` — the host-side command line. Each subcommand lives in its own module
and registers itself here; keep this file a table of contents."""

from __future__ import annotations

import argparse
import sys

from ark_runtime import trace
from ark_runtime.agents import cli as agents_cli
from ark_runtime.bus import cli as bus_cli
from ark_runtime.host import dr, envcheck, heal, ports, snapshot
from ark_runtime.metrics import server as metrics_server


def _api(args: argparse.Namespace) -> int:
    from ark_runtime.api.server import serve

    return serve()


def _version(args: argparse.Namespace) -> int:
    from ark_runtime import __version__

    print(__version__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ark", description="ARK runtime commands")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("api", help="serve the reasoning API (run by ark-api.service)").set_defaults(
        func=_api
    )
    sub.add_parser("version", help="print the runtime version").set_defaults(func=_version)
    agents_cli.register(sub)  # ark agent NAME
    bus_cli.register(sub)  # ark errors ..., ark dead
    trace.register(sub)  # ark trace ID
    envcheck.register(sub)  # ark env check PATH, ark env domains UNIT
    snapshot.register(sub)  # ark snapshot create|list|verify|restore|prune
    ports.register(sub)  # ark ports check
    heal.register(sub)  # ark heal [--dry-run] [--json] [--clear-panic]
    dr.register(sub)  # ark dr bundle|restore
    metrics_server.register(sub)  # ark metrics --listen ADDR:PORT
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
