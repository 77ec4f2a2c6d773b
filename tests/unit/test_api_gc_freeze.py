"""UI_03 chatter latency: the API freezes its startup heap out of the collector's reach, so a
full collection does not stall the event loop for the whole heap (the ~33 ms chatter p99)."""

from __future__ import annotations

import gc

import pytest
from fastapi.testclient import TestClient

from ark_runtime.api.app import create_app
from ark_runtime.config import RedisSettings


@pytest.mark.requirement("UI_03")
def test_the_api_freezes_its_startup_heap_while_it_runs(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ARK_STATE_DIR", str(tmp_path))
    gc.unfreeze()
    app = create_app(RedisSettings(port=1, password="x"), secret="s" * 40, operators={})
    with TestClient(app):
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the modules, the app and its schema
        # a full collection no longer walks them
        assert len(gc.get_objects(generation=2)) < frozen
    assert gc.get_freeze_count() == 0  # collectable again once the app is gone
