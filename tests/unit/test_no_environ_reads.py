"""SEC_01: the settings layer is the one reader of the process environment.

Parses every module of ark_runtime and fails on any read of os.environ / os.getenv outside
`ark_runtime/settings/`, so a variable cannot be read (with its own default) behind the
declaration's back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.requirement("SEC_01")

PACKAGE = Path(__file__).resolve().parents[2] / "ark_runtime"
SETTINGS_LAYER = {"settings/__init__.py"}
# host/ports.py is copied to a host and run as `python3 -I ports.py` by the deploy preflight
# before any venv exists: it cannot import the settings layer, so it reads the port variables
# itself (tests/unit/test_ports.py keeps them equal to the declaration).
STANDALONE = {"host/ports.py"}
_FORBIDDEN = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def _allowed(relative: str) -> bool:
    return relative in SETTINGS_LAYER or relative in STANDALONE


def environ_reads(source: str) -> list[int]:
    """Line numbers of os.environ / os.getenv uses (attribute or `from os import ...`)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        attribute = (isinstance(node, ast.Attribute) and node.attr in _FORBIDDEN
                     and isinstance(node.value, ast.Name) and node.value.id in ("os", "posix"))
        imported = (isinstance(node, ast.ImportFrom) and node.module in ("os", "posix")
                    and any(alias.name in _FORBIDDEN for alias in node.names))
        if attribute or imported:
            lines.append(node.lineno)
    return lines


def test_detector_finds_every_spelling() -> None:
    assert environ_reads("import os\nos.environ.get('X')\n") == [2]
    assert environ_reads("import os\nx = os.getenv('X')\n") == [2]
    assert environ_reads("from os import environ\n") == [1]
    assert environ_reads("from os import getenv as g\n") == [1]
    assert environ_reads("import os\nos.path.join('a')\n") == []


def test_no_environment_read_outside_the_settings_layer() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if _allowed(relative):
            continue
        offenders += [f"ark_runtime/{relative}:{n}" for n in environ_reads(path.read_text())]
    assert offenders == [], (
        "read settings through ark_runtime.settings (declare the variable in "
        f"settings/model.py), not os.environ: {', '.join(offenders)}"
    )


def test_the_settings_layer_does_read_the_environment() -> None:
    # Guards the allow-list: if the reader moves, this test must move with it.
    assert environ_reads((PACKAGE / "settings/__init__.py").read_text())
