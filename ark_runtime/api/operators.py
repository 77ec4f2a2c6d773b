"""Operator accounts (name, role, scrypt hash) from `<config>/api/operators.json`, which the
ark_runtime role renders from `ark_runtime_api_operators`. Only hashes live there."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ark_runtime.api.passwords import HashFormatError, parse
from ark_runtime.host.layout import config_dir

ROLES = ("viewer", "admin")
NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


class OperatorsError(ValueError):
    pass


@dataclass(frozen=True)
class Operator:
    name: str
    role: str
    password_hash: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def operators_path() -> Path:
    return config_dir() / "api" / "operators.json"


def parse_operators(data: object) -> dict[str, Operator]:
    """Validate the list; every problem names the entry and the field."""
    if not isinstance(data, list):
        raise OperatorsError("operators: expected a list of {name, role, password_hash}")
    out: dict[str, Operator] = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise OperatorsError(f"operators[{i}]: expected a mapping")
        name, role, hashed = item.get("name"), item.get("role"), item.get("password_hash")
        if not isinstance(name, str) or not NAME.match(name):
            raise OperatorsError(f"operators[{i}].name: expected a lowercase login name")
        if role not in ROLES:
            raise OperatorsError(f"operators[{i}].role: expected one of {', '.join(ROLES)}")
        try:
            parse(hashed if isinstance(hashed, str) else "")
        except HashFormatError as exc:
            raise OperatorsError(f"operators[{i}].{exc}") from None
        if name in out:
            raise OperatorsError(f"operators[{i}].name: duplicate operator {name!r}")
        out[name] = Operator(name, role, hashed)
    return out


def load_operators(path: Path | None = None) -> dict[str, Operator]:
    path = path or operators_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}  # no accounts: nobody can sign in, the console stays closed
    except ValueError as exc:
        raise OperatorsError(f"{path}: not valid JSON ({exc.msg})") from None
    return parse_operators(data)


def unchanged_passwords(new: dict[str, Operator], current: dict[str, Operator]) -> list[str]:
    """The operators whose password hash is the one deployed now (issue 22 §3: rotating the
    operators means every one of them signs in with a new password)."""
    return sorted(name for name, op in new.items()
                  if name in current and current[name].password_hash == op.password_hash)


def install_operators(text: str, dest: Path) -> None:
    """Write the accounts file atomically with the mode and owner the role gives it (root,
    the API's group, 0640): the API re-reads it on change."""
    from ark_runtime.host.atomic import rewrite_keeping_owner

    rewrite_keeping_owner(dest, text)
