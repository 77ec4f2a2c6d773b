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


def _check_operators(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ark_runtime.api.operators import OperatorsError, load_operators

    path = Path(args.path)
    if not path.is_file():
        print(f"ark api check-operators: {path}: no such file", file=sys.stderr)
        return ExitCode.DATAERR
    try:
        accounts = load_operators(path)
    except OperatorsError as exc:
        print(f"ark api check-operators: {exc}", file=sys.stderr)
        return ExitCode.DATAERR
    print(f"{len(accounts)} operator(s) ok")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    api = sub.add_parser("api", help="serve the API and operator console (ark-api.service)")
    api.set_defaults(func=_serve)
    inner = api.add_subparsers(dest="api_command", metavar="SUBCOMMAND")
    inner.add_parser("hash-password",
                     help="read a password from stdin, print its scrypt hash").set_defaults(
        func=_hash_password)
    check = inner.add_parser("check-operators", help="validate an operators.json file")
    check.add_argument("path")
    check.set_defaults(func=_check_operators)
