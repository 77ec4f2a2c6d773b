"""AGENT_01: docs/AGENT_PROTOCOL.md is exactly what the code renders."""

from __future__ import annotations

from pathlib import Path

import pytest

from ark_runtime.bus.registry import REGISTRY
from ark_runtime.protocol_doc import main, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "AGENT_PROTOCOL.md"


@pytest.mark.requirement("AGENT_01")
def test_committed_protocol_doc_matches_code() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/AGENT_PROTOCOL.md is stale: run "
        "python -m ark_runtime.protocol_doc --write docs/AGENT_PROTOCOL.md"
    )


@pytest.mark.requirement("AGENT_01")
def test_doc_lists_every_type_and_check_detects_drift(tmp_path) -> None:
    text = render()
    for name in REGISTRY:
        assert f"### `{name}`" in text
    stale = tmp_path / "doc.md"
    stale.write_text(text.replace("market.bar", "market.bars", 1))
    assert main(["--check", str(stale)]) == 1
    assert main(["--write", str(stale)]) == 0
    assert main(["--check", str(stale)]) == 0
