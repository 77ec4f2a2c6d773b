"""`python -m ark_runtime.hrm check PATH`: validate a ruleset (the deploy runs this).

Exit 0 when usable; 65 (DATAERR: the file checked is the input data) when invalid, each
problem on its own line naming the rule id; 64 on a bad command line. A ruleset HRM is
*started* with that fails is a configuration error instead (`ark agent hrm` exits 78).
"""

from __future__ import annotations

import sys

from ark_runtime.exitcodes import ArkArgumentParser, ExitCode
from ark_runtime.hrm.ruleset import DEFAULT_RULESET, check_ruleset_file


def main(argv: list[str] | None = None) -> int:
    parser = ArkArgumentParser(prog="python -m ark_runtime.hrm",
                               description="Exit codes: 0 valid, 65 invalid ruleset, 64 usage.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate an HRM ruleset file")
    check.add_argument("path", nargs="?", default=str(DEFAULT_RULESET))
    args = parser.parse_args(argv)
    try:
        problems = check_ruleset_file(args.path)
    except (TypeError, AttributeError, ValueError) as exc:
        # A shape the parser does not expect is still a bad file, not a crash.
        problems = [f"not a valid ruleset: {exc}"]
    if problems:
        print(f"{args.path}: invalid HRM ruleset", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return ExitCode.DATAERR
    print(f"{args.path}: ok")
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
