"""Where the checkout is. A leaf: it imports nothing from ark_ops, so any module may use it."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
