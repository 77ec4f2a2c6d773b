"""MEM_02: boot_state.json, what the last clean shutdown left for the next boot.

{"payload": {...}, "sha256": "<sha256 of the payload's canonical JSON>"}: the checksum lives
inside the file so a torn or hand-edited file is detected on load without a second file that
could itself go out of step. The file is written atomically (ark_runtime.host.atomic), so a crash
during the write leaves the previous state, never half of each.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ark_runtime.host.atomic import atomic_write_text

FILENAME = "boot_state.json"


class BootStateError(ValueError):
    """boot_state.json is missing, unreadable, or its checksum does not match."""


def _digest(payload: Mapping[str, Any]) -> str:
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def write_boot_state(
    state_dir: Path,
    *,
    snapshot_id: str | None,
    last_clean_shutdown_at: str | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`last_clean_shutdown_at` is None when it is not known (heal rewriting a damaged file):
    never claim a clean shutdown that was not seen."""
    from ark_runtime import __version__

    payload: dict[str, Any] = {
        "last_clean_shutdown_at": last_clean_shutdown_at,
        "snapshot_id": snapshot_id,
        "runtime_version": __version__,
        **(extra or {}),
    }
    doc = {"payload": payload, "sha256": _digest(payload)}
    state_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(state_dir / FILENAME, json.dumps(doc, indent=2, sort_keys=True) + "\n",
                      mode=0o640)
    return payload


def load_boot_state(state_dir: Path) -> dict[str, Any]:
    """The payload, or BootStateError saying why it cannot be trusted."""
    path = state_dir / FILENAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BootStateError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BootStateError(f"{path} is unreadable: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict):
        raise BootStateError(f"{path} has no payload object")
    if doc.get("sha256") != _digest(doc["payload"]):
        raise BootStateError(f"{path}: checksum mismatch (file was altered or torn)")
    return doc["payload"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
