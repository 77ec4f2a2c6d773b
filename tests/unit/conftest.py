"""Unit tests never write the machine's real audit chain (/var/log/ark/audit): admin
commands they run record into a temporary one unless the test names its own."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _private_audit_dir(tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    if not (os.environ.get("ARK_AUDIT_DIR") or os.environ.get("ARK_LOG_DIR")
            or os.environ.get("ARK_ROOT_PREFIX")):
        monkeypatch.setenv("ARK_AUDIT_DIR", str(tmp_path_factory.mktemp("audit")))
