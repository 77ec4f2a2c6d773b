"""`ark agent NAME`: run one agent in the foreground (ExecStart of ark-agent@NAME.service)."""

from __future__ import annotations

import argparse
import sys

from ark_runtime.exitcodes import ExitCode
from ark_runtime.pipeline import NAMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="run one agent of the pipeline (ark_runtime/pipeline.py)",
                       description="Exit codes: 0 clean stop, 64 bad arguments (unknown agent), "
                       "69 Redis unreachable at start, 75 another instance holds the lock, "
                       "78 bad configuration (env values, feed, ruleset).")
    p.add_argument("name", help=f"{' | '.join(NAMES)}, or a Joey shard: joey-1 .. joey-63")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ark_runtime.agents import agent_class
    from ark_runtime.bus.shards import parse_instance
    from ark_runtime.validators import ValidationError

    name, shard = parse_instance(args.name)
    try:
        cls = agent_class(name)
    except ValidationError as exc:
        print(f"ark agent: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        agent = cls(shard=shard) if shard else cls()
    except ValueError as exc:  # a shard index past the largest count
        print(f"ark agent: {args.name}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if shard:
        # A shard the count no longer has (a unit left behind) exits before it connects:
        # its ConfigError would otherwise pause the whole pipeline as critical.
        from ark_runtime.settings import SettingsError, get

        try:
            shards = get("ARK_JOEY_SHARDS")
        except SettingsError as exc:
            print(f"ark agent: {exc}", file=sys.stderr)
            return ExitCode.CONFIG
        if shard >= shards:
            print(f"ark agent: {args.name}: ARK_JOEY_SHARDS is {shards}, so there is no "
                  f"shard {shard}; this unit should not run", file=sys.stderr)
            return ExitCode.CONFIG
    return agent.run()
