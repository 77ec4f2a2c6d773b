"""`ark api` (serve) and `ark api hash-password` (stdin -> scrypt hash for the inventory)."""

from __future__ import annotations

import argparse
import getpass
import sys

from ark_runtime.exitcodes import ExitCode


def _serve(args: argparse.Namespace) -> int:
    from ark_runtime.api.server import serve

    return serve()


def _hash_password(args: argparse.Namespace) -> int:
    from ark_runtime.api.passwords import hash_password

    # Never from argv (it would sit in shell history and /proc/*/cmdline).
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("ark api hash-password: no password on stdin", file=sys.stderr)
        return ExitCode.USAGE
    print(hash_password(password))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    api = sub.add_parser("api", help="serve the API and operator console (ark-api.service)")
    api.set_defaults(func=_serve)
    inner = api.add_subparsers(dest="api_command", metavar="SUBCOMMAND")
    inner.add_parser("hash-password",
                     help="read a password from stdin, print its scrypt hash").set_defaults(
        func=_hash_password)
