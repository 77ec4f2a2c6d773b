"""docs/ROLE_VARIABLES.md: every role variable with its type, default and description,
generated from each role's `meta/argument_specs.yml` (what Ansible validates the inputs
against) and `defaults/main.yml` (what the role falls back to), as the prometheus-community
roles publish theirs. `invoke role-vars` writes it; a unit test fails when it is stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ark_ops.paths import REPO_ROOT

ROLES = REPO_ROOT / "roles"
OUT = REPO_ROOT / "docs" / "ROLE_VARIABLES.md"


def _cell(text: str) -> str:
    """One Markdown table cell: no newline, no bare pipe."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(name: str, spec: dict[str, Any], defaults: dict[str, Any]) -> str:
    if name in defaults:
        value = defaults[name]
    elif "default" in spec:
        value = spec["default"]
    else:
        return "required" if spec.get("required") else "(none)"
    if isinstance(value, str):
        text = value or '""'
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, int | float) or value is None:
        text = "null" if value is None else str(value)
    else:
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return f"`{_cell(text)}`"


def _type(spec: dict[str, Any]) -> str:
    kind = spec.get("type", "str")
    if kind == "list" and "elements" in spec:
        kind = f"list of {spec['elements']}"
    if "choices" in spec:
        kind += " (" + ", ".join(map(str, spec["choices"])) + ")"
    return kind


def role_table(role: Path) -> list[str]:
    specs = (yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
             or {}).get("argument_specs") or {}
    defaults_file = role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() \
        else {}
    lines = [f"## {role.name}", ""]
    for entry, spec in specs.items():
        where = "" if entry == "main" else f" (tasks_from: {entry})"
        lines += [f"{_cell(spec.get('short_description', ''))}{where}.", "",
                  "| variable | type | default | description |", "|---|---|---|---|"]
        for name, opt in sorted((spec.get("options") or {}).items()):
            desc = opt.get("description", "")
            desc = " ".join(desc) if isinstance(desc, list) else desc
            lines.append(f"| `{name}` | {_cell(_type(opt))} | {_default(name, opt, defaults)} "
                         f"| {_cell(desc)} |")
        lines.append("")
    return lines


def render(roles_dir: Path = ROLES) -> str:
    lines = ["# Role variables", "",
             "Every input of every role, generated from `roles/*/meta/argument_specs.yml` and",
             "`roles/*/defaults/main.yml` by `invoke role-vars` (do not edit; a unit test",
             "fails when this file is stale). Set them in your inventory's group_vars.",
             "Defaults written as `{{ ... }}` are computed from other variables.", ""]
    for role in sorted(p for p in roles_dir.iterdir()
                       if (p / "meta" / "argument_specs.yml").is_file()):
        lines += role_table(role)
    return "\n".join(lines).rstrip("\n") + "\n"


def write(path: Path = OUT) -> Path:
    path.write_text(render())
    return path
