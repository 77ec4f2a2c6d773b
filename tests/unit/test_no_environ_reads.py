"""SEC_01: the settings layer is the one reader of the process environment.

Parses every module of ark_runtime and fails on any access to the environment outside the
`ark_runtime/settings/` package: `os.environ`/`os.getenv` however `os` was imported, any
`.environ`/`.getenv` attribute (a wrapper handing the whole environment out, such as the
former `settings.environ()`), and `from ... import environ`. So a variable cannot be read
(with its own default) behind the declaration's back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.requirement("SEC_01")

PACKAGE = Path(__file__).resolve().parents[2] / "ark_runtime"
SETTINGS_PACKAGE = "settings/"
# host/ports.py is copied to a host and run as `python3 -I ports.py` by the deploy preflight
# before any venv exists: it cannot import the settings layer, so it reads the port variables
# itself (tests/unit/test_ports.py keeps them equal to the declaration).
STANDALONE = {"host/ports.py"}
_FORBIDDEN = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def _allowed(relative: str) -> bool:
    return relative.startswith(SETTINGS_PACKAGE) or relative in STANDALONE


def environ_reads(source: str) -> list[int]:
    """Line numbers of environment accesses: any `.environ`/`.getenv`/... attribute, whatever
    it is taken from, and any `from X import environ/getenv/...`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        attribute = isinstance(node, ast.Attribute) and node.attr in _FORBIDDEN
        imported = (isinstance(node, ast.ImportFrom)
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
    # ...and the spellings the name-only check let through.
    assert environ_reads("import os as o\no.environ['X']\n") == [2]
    assert environ_reads("from ark_runtime import settings\nsettings.environ()\n") == [2]
    assert environ_reads("from ark_runtime.settings import environ\n") == [1]
    assert environ_reads("import posix\nposix.environ\n") == [2]


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


def test_the_settings_use_the_librarys_sources(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    # ArkSettings() itself reads the environment and the systemd credentials directory
    # (pydantic-settings' env and secrets-dir sources), not a mapping the layer copied.
    from ark_runtime.settings import load
    from ark_runtime.settings.model import ArkSettings

    monkeypatch.setenv("ARK_REDIS_PORT", "6391")
    assert ArkSettings().redis_port == 6391
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "ARK_API_SECRET").write_text("s" * 40)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = load()
    assert cfg.api_secret is not None and cfg.api_secret.get_secret_value() == "s" * 40
    assert ArkSettings.of_mapping({}).redis_port == 6379  # a mapping alone: no environment


def test_settings_expose_no_copy_of_the_environment() -> None:
    import ark_runtime.settings as settings

    assert not hasattr(settings, "environ")
