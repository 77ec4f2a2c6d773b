"""`ark` — the host-side command line. Each subcommand lives in its own module
and registers itself here; keep this file a table of contents."""

from __future__ import annotations

import argparse
import sys

from ark_runtime import hrm_cli, trace
from ark_runtime.agents import cli as agents_cli
from ark_runtime.api import cli as api_cli
from ark_runtime.bus import cli as bus_cli
from ark_runtime.exitcodes import ArkArgumentParser, ExitCode
from ark_runtime.host import envcheck, ports
from ark_runtime.host.audit import cli as audit_cli
from ark_runtime.host.config import cli as config_cli
from ark_runtime.host.dr import cli as dr_cli
from ark_runtime.host.heal import healer as heal
from ark_runtime.host.snapshot import cli as snapshot_cli
from ark_runtime.metrics import server as metrics_server


def _version(args: argparse.Namespace) -> int:
    from ark_runtime import __version__

    print(__version__)
    return ExitCode.OK


def build_parser() -> argparse.ArgumentParser:
    # Subparsers inherit the parser class: every `ark ...` usage error exits 64.
    parser = ArkArgumentParser(prog="ark", description="ARK runtime commands")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    api_cli.register(sub)  # ark api [hash-password]
    sub.add_parser("version", help="print the runtime version").set_defaults(func=_version)
    agents_cli.register(sub)  # ark agent NAME
    bus_cli.register(sub)  # ark errors ..., ark dead
    trace.register(sub)  # ark trace ID
    envcheck.register(sub)  # ark env check PATH, ark env domains UNIT
    snapshot_cli.register(sub)  # ark snapshot create|list|verify|restore|prune
    ports.register(sub)  # ark ports check
    heal.register(sub)  # ark heal [--dry-run] [--json] [--clear-panic]
    dr_cli.register(sub)  # ark dr bundle|restore
    audit_cli.register(sub)  # ark audit show|verify|record|head
    config_cli.register(sub)  # ark config record|list|diff|rollback|prune
    metrics_server.register(sub)  # ark metrics --listen ADDR:PORT
    hrm_cli.register(sub)  # ark hrm risk, ark hrm breaker reset NAME --reason ...
    return parser


def _expected_errors() -> list[tuple[type[BaseException], ExitCode]]:
    """The project's own errors, most specific first, with the code each one means. A
    subcommand normally handles these itself; this is the net under all of them."""
    from ark_runtime.host.bootstate import BootStateError
    from ark_runtime.host.dr.format import BundleError, BundleUsageError
    from ark_runtime.host.envcheck import EnvSchemaError
    from ark_runtime.host.snapshot.manifest import ManifestKeyError
    from ark_runtime.host.snapshot.snapshots import PolicyError, SnapshotError, SnapshotKeyError
    from ark_runtime.hrm.ruleset import RulesetError
    from ark_runtime.lock import AlreadyRunning
    from ark_runtime.store import StoreError
    from ark_runtime.validators import ValidationError

    return [
        (SnapshotKeyError, ExitCode.NOPERM), (ManifestKeyError, ExitCode.NOPERM),
        (PolicyError, ExitCode.CONFIG), (SnapshotError, ExitCode.FAILURE),
        (BundleUsageError, ExitCode.USAGE), (BundleError, ExitCode.DATAERR),
        (EnvSchemaError, ExitCode.CONFIG), (RulesetError, ExitCode.CONFIG),
        (BootStateError, ExitCode.DATAERR), (StoreError, ExitCode.DATAERR),
        (ValidationError, ExitCode.USAGE), (AlreadyRunning, ExitCode.TEMPFAIL),
        (PermissionError, ExitCode.NOPERM),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        return ExitCode.OK if code is None else int(code)
    except KeyboardInterrupt:
        return 130  # the shell's convention for SIGINT
    except Exception as exc:
        for kind, code in _expected_errors():
            if isinstance(exc, kind):
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                print(f"{parser.prog} {args.command}: {first_line}", file=sys.stderr)
                return code
        raise  # a bug: the traceback is what a bug report needs


if __name__ == "__main__":
    sys.exit(main())
