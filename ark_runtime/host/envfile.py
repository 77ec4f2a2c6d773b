"""Set one variable in a rendered env file, in place (issue 22 §3: rotating a secret without a
deploy that would restart every unit reading the file's neighbours).

The line is written exactly as the role's template writes it (`NAME="json"`, the variables in
name order), so the next deploy renders the same file and restarts nothing. The value comes
from a file, never from the command line; it is never printed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from ark_runtime.host.atomic import rewrite_keeping_owner

_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


class EnvFileError(ValueError):
    """The variable cannot be set; nothing was written."""


def render_line(name: str, value: str) -> str:
    return f"{name}={json.dumps(value)}"  # Ansible's to_json of a string


def with_variable(text: str, name: str, value: str) -> str:
    """`text` with NAME's line replaced (or inserted in name order), everything else as it was."""
    if not _NAME.fullmatch(name):
        raise EnvFileError(f"{name[:60]!r} is not a variable name (UPPER_SNAKE_CASE)")
    if "\n" in value or "\r" in value or "\x00" in value:
        raise EnvFileError(f"the value for {name} must be one line of text")
    lines = text.split("\n")
    new = render_line(name, value)
    keys = [(i, line.partition("=")[0].strip()) for i, line in enumerate(lines)
            if line.strip() and line.strip()[0] not in "#;" and "=" in line]
    for i, key in keys:
        if key == name:
            lines[i] = new
            return "\n".join(lines)
    after = next((i for i, key in keys if key > name), None)
    if after is None:
        at = keys[-1][0] + 1 if keys else len(lines) - (1 if lines and lines[-1] == "" else 0)
    else:
        at = after
    lines.insert(at, new)
    return "\n".join(lines)


def set_variable(path: Path, name: str, value: str,
                 problems_of: Callable[[Path], list[str]]) -> None:
    """Rewrite `path` with NAME=value, atomically, keeping its mode and owner; refused (the
    file untouched) when `problems_of(the new file)` names any problem."""
    text = with_variable(path.read_text(encoding="utf-8"), name, value)

    def refuse_invalid(candidate: Path) -> None:
        problems = problems_of(candidate)
        if problems:
            raise EnvFileError(f"{path}: not changed, the result would be invalid: "
                               + "; ".join(problems))

    rewrite_keeping_owner(path, text, check=refuse_invalid)
