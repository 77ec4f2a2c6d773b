"""Find the secret values that text leaving the control node (console, JUnit XML, Markdown
reports) must not carry; masking them is ark_runtime/redact.py's `Redactor`, the one mask.

Secrets come from two places: the inventory's generated secrets
(`inventory/<name>/.secrets/*`, written by Ansible's password lookup, see
playbooks/group_vars/all/ark.yml) and the hosts' env files, whose variables the env
schema (`ark_runtime/env.schema.yaml`) marks `sensitive`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import yaml

from ark_runtime.redact import MASK, Redactor, forms, is_secret_variable

SCHEMA = Path(__file__).resolve().parent.parent / "ark_runtime" / "env.schema.yaml"
__all__ = ["MASK", "Redactor", "env_file_secrets", "forms", "inventory_secrets",
           "sensitive_names"]


def inventory_secrets(inventory: Path) -> list[str]:
    """Values in `<inventory dir>/.secrets/`. Ansible's password lookup may append
    ` salt=...`/` ident=...` to the value: both parts are kept as secrets."""
    folder = (inventory if inventory.is_dir() else inventory.parent) / ".secrets"
    values: list[str] = []
    if not folder.is_dir():
        return values
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace").strip()
        if not text:
            continue
        values.append(text)
        password, *params = text.split(" ")
        values.append(password)
        values += [p.split("=", 1)[1] for p in params if "=" in p]
    return values


def sensitive_names(schema: Path = SCHEMA) -> tuple[set[str], set[str]]:
    """(names the schema marks sensitive, every name the schema declares)."""
    data = yaml.safe_load(schema.read_text()) or {}
    variables = data.get("variables") or {}
    sensitive = {name for name, spec in variables.items()
                 if isinstance(spec, dict) and spec.get("sensitive")}
    return sensitive, set(variables)


def env_file_secrets(text: str, schema: Path = SCHEMA) -> list[str]:
    """Values of sensitive variables in an env file as systemd reads it (`NAME=value`,
    the value possibly JSON-quoted as roles/ark_runtime/templates/env/domain.env.j2 writes it)."""
    sensitive, declared = sensitive_names(schema)
    values: list[str] = []
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        name = name.removeprefix("export ").strip()
        if not sep or name.startswith("#"):
            continue
        if name in sensitive or is_secret_variable(name, declared, unknown_is_secret=False):
            values.append(value)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                inner = value[1:-1]
                values.append(inner)
                with contextlib.suppress(ValueError):  # not JSON: the inner text is kept
                    values.append(str(json.loads(value)))
    return [v for v in values if v]
