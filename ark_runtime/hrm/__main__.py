"""`python -m ark_runtime.hrm check PATH`: validate a ruleset (the deploy runs this).

Exit 0 when usable, 2 when invalid, each problem on its own line naming the rule id.
"""

from __future__ import annotations

import argparse
import sys

from ark_runtime.hrm.ruleset import DEFAULT_RULESET, check_ruleset_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ark_runtime.hrm")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate an HRM ruleset file")
    check.add_argument("path", nargs="?", default=str(DEFAULT_RULESET))
    args = parser.parse_args(argv)
    problems = check_ruleset_file(args.path)
    if problems:
        print(f"{args.path}: invalid HRM ruleset", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    print(f"{args.path}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
