"""`ark api` (serve) and `ark api hash-password` (stdin -> scrypt hash for the inventory)."""

from __future__ import annotations

import argparse
import getpass
import sys

from ark_runtime.exitcodes import ExitCode
from ark_runtime.host.audit.log import audited_command


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


@audited_command("api.replace-operators")
def _replace_operators(args: argparse.Namespace) -> int:
    """Issue 22 §3: install new accounts only when every operator has a new password hash;
    the caller restarts the API, which ends every session."""
    import json
    from pathlib import Path

    from ark_runtime.api.operators import (
        OperatorsError,
        install_operators,
        load_operators,
        operators_path,
        parse_operators,
        unchanged_passwords,
    )

    dest = Path(args.dest) if args.dest else operators_path()
    try:
        text = Path(args.path).read_text(encoding="utf-8")
        new = parse_operators(json.loads(text))
        current = load_operators(dest)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        why = exc if isinstance(exc, OperatorsError) else f"{args.path}: unreadable or not JSON"
        print(f"ark api replace-operators: {why}", file=sys.stderr)
        return ExitCode.DATAERR
    if not new:
        print("ark api replace-operators: no operators: nobody could sign in", file=sys.stderr)
        return ExitCode.DATAERR
    same = unchanged_passwords(new, current)
    if same:
        print(f"ark api replace-operators: {', '.join(same)} still ha"
              f"{'s' if len(same) == 1 else 've'} the deployed password hash: set a new "
              "password_hash (ark api hash-password) in ark_runtime_api_operators first",
              file=sys.stderr)
        return ExitCode.DATAERR
    if not dest.exists():
        print(f"ark api replace-operators: {dest}: no such file (deploy first)", file=sys.stderr)
        return ExitCode.DATAERR
    install_operators(text, dest)
    print(f"{len(new)} operator(s) installed with new passwords")
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
    repl = inner.add_parser("replace-operators",
                            help="install a new operators.json if every password changed")
    repl.add_argument("path")
    repl.add_argument("--dest", help="the accounts file (default <config>/api/operators.json)")
    repl.set_defaults(func=_replace_operators)
