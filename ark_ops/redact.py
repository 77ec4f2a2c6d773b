"""Replace every known secret value by `***` in text that leaves the control node
(console, JUnit XML, Markdown reports).

Secrets come from two places: the inventory's generated secrets
(`inventory/<name>/.secrets/*`, written by Ansible's password lookup, see
playbooks/group_vars/all/ark.yml) and the hosts' env files, whose variables the env
schema (`ark_runtime/env.schema.yaml`) marks `sensitive`.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
from collections.abc import Iterable
from pathlib import Path

import yaml

MASK = "***"
SCHEMA = Path(__file__).resolve().parent.parent / "ark_runtime" / "env.schema.yaml"
# A variable the schema does not know is treated as secret when its name says so.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|APIKEY|CREDENTIAL", re.IGNORECASE)


def forms(secret: str) -> set[str]:
    """The secret as written raw, XML-escaped, JSON-escaped and Python-repr'd: a report
    may carry any of these."""
    return {secret, html.escape(secret), json.dumps(secret)[1:-1], repr(secret)[1:-1]}


class Redactor:
    """Masks a fixed set of secret values. Overlapping and nested secrets are masked as
    the union of everything any of them covers, so no fragment of one survives."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            # A value made only of mask characters cannot be hidden by masking (and
            # would make every mask look like a leak): such a value is not kept.
            if secret and secret.strip("*"):
                self.secrets |= {f for f in forms(secret) if f.strip("*")}

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def _mask_once(self, text: str) -> str:
        covered: list[tuple[int, int]] = []
        for secret in self.secrets:
            start = text.find(secret)
            while start != -1:
                covered.append((start, start + len(secret)))
                start = text.find(secret, start + 1)  # overlapping occurrences too
        if not covered:
            return text
        covered.sort()
        out, pos = [], 0
        merged_start, merged_end = covered[0]
        for start, end in covered[1:] + [(len(text) + 1, len(text) + 1)]:
            if start <= merged_end:
                merged_end = max(merged_end, end)
                continue
            out += [text[pos:merged_start], MASK]
            pos = merged_end
            merged_start, merged_end = start, end
        out.append(text[pos:])
        return "".join(out)

    def __call__(self, text: str) -> str:
        # A mask next to leftover characters can spell another secret (secret "**a"
        # after "xa" was masked in "xaa"); repeat until nothing is found. Each pass
        # replaces at least one non-mask character, so this ends.
        if not self.secrets or not text:
            return text
        while True:
            masked = self._mask_once(text)
            if masked == text:
                return text
            text = masked


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
        if name in sensitive or (name not in declared and SECRET_NAME.search(name)):
            values.append(value)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                inner = value[1:-1]
                values.append(inner)
                with contextlib.suppress(ValueError):  # not JSON: the inner text is kept
                    values.append(str(json.loads(value)))
    return [v for v in values if v]
