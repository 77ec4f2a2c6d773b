"""Render the env schema file the deploy reads, from the one declaration.

    python -m ark_runtime.settings --write    # ark_runtime/env.schema.yaml
    python -m ark_runtime.settings --check    # exit 1 when it is stale (a unit test runs it)

One file, inside the package: the hosts read it from the wheel, the deploy and the control
node from the checkout.

The Ansible role (roles/ark_runtime) reads `domains`, `units` and each variable's `domain`
from it to render one env file per domain and each unit's EnvironmentFile= lines.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from ark_runtime.exitcodes import ArkArgumentParser, ExitCode
from ark_runtime.settings.catalog import FEATURE_FLAG, VARIABLES, Variable
from ark_runtime.settings.model import DOMAINS, UNITS

PACKAGE_SCHEMA = Path(__file__).resolve().parents[1] / "env.schema.yaml"

HEADER = """\
# SEC_01: the typed environment of ARK. GENERATED from ark_runtime/settings/model.py by
# `python -m ark_runtime.settings --write`; do not edit (a unit test compares it with the code).
# Read by the deploy (one env file per domain, each unit only its domains) and by operators;
# `ark env check` validates with the same declaration.
#
# Each variable: domain, type (str, int, float, port, bool, enum, host, url, path) and its
# rules, required (also required_in: [environments], required_if: {OTHER: value}),
# sensitive (never printed by any ARK tool), default (default_text when computed), the units
# whose env files carry it, the components that read it, and a description.
"""


class _Dumper(yaml.SafeDumper):
    """Block mappings, one-line lists: readable in review."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data,
                                                         flow_style=True))


def _entry(var: Variable) -> dict[str, Any]:
    entry: dict[str, Any] = {"domain": var.domain, "type": var.kind}
    entry.update({k: v for k, v in var.rules.items() if k != "min_exclusive"})
    if var.rules.get("min_exclusive"):
        entry["min_exclusive"] = True
    entry["required"] = var.required
    if var.required_in:
        entry["required_in"] = list(var.required_in)
    if var.required_if:
        entry["required_if"] = dict(var.required_if)
    entry["sensitive"] = var.sensitive
    entry["default"] = var.default
    if var.default_text:
        entry["default_text"] = var.default_text
    entry["units"] = var.units
    entry["read_by"] = list(var.read_by)
    entry["description"] = var.description
    return entry


def render() -> str:
    document = {
        "version": 1,
        "domains": dict(DOMAINS),
        "units": {unit: list(domains) for unit, domains in UNITS.items()},
        "variables": {name: _entry(var) for name, var in VARIABLES.items()},
        # Any other ARK_FEATURE_* variable is a boolean feature flag.
        "patterns": {FEATURE_FLAG.name: _entry(FEATURE_FLAG)},
    }
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=4096, allow_unicode=True)
    return HEADER + "---\n" + body


def main(argv: list[str] | None = None) -> int:
    parser = ArkArgumentParser(prog="python -m ark_runtime.settings",
                               description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="regenerate the schema file")
    group.add_argument("--check", action="store_true", help="exit 1 when it is stale")
    args = parser.parse_args(argv)
    text = render()
    stale = []
    for path in (PACKAGE_SCHEMA,):
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if args.write and current != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        elif args.check and current != text:
            stale.append(path)
    for path in stale:
        print(f"{path} is stale: run python -m ark_runtime.settings --write", file=sys.stderr)
    return ExitCode.FAILURE if stale else ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
