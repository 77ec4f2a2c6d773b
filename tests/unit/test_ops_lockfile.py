"""DEPLOY_03: the lock is parsed strictly, and drift from requirements.in is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from ark_ops.deploy.lockfile import lock_drift, parse_lock
from ark_ops.errors import OpsError
from ark_ops.paths import REPO_ROOT

pytestmark = pytest.mark.requirement("DEPLOY_03")

H1 = "sha256:" + "a" * 64
H2 = "sha256:" + "b" * 64


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parses_pins_with_every_hash_and_marker(tmp_path):
    lock = write(tmp_path, "r.lock", (
        "# comment\n"
        "redis==5.0.1 \\\n    --hash=" + H1 + " \\\n    --hash=" + H2 + "\n"
        "    # via -r requirements.in\n"
        'async-timeout==4.0.3 ; python_full_version < "3.11.3" \\\n    --hash=' + H1 + "\n"
    ))
    pins = parse_lock(lock)
    assert pins["redis"].version == "5.0.1"
    assert pins["redis"].hashes == (H1, H2)
    assert "python_full_version" in pins["async-timeout"].line
    assert "--hash=" + H2 in pins["redis"].render()


def test_refuses_an_unhashed_pin(tmp_path):
    lock = write(tmp_path, "r.lock", "redis==5.0.1\n")
    with pytest.raises(OpsError, match="redis has no --hash"):
        parse_lock(lock)


def test_refuses_a_range_instead_of_a_pin(tmp_path):
    lock = write(tmp_path, "r.lock", "redis>=5 --hash=" + H1 + "\n")
    with pytest.raises(OpsError, match="not pinned with =="):
        parse_lock(lock)


def test_drift_names_missing_and_out_of_range_packages(tmp_path):
    lock = write(tmp_path, "r.lock", "redis==5.0.1 --hash=" + H1 + "\n")
    req_in = write(tmp_path, "r.in", "redis>=6  # too new\nfastapi\n")
    problems = lock_drift(req_in, lock)
    assert any("redis is pinned at 5.0.1" in p for p in problems)
    assert any("fastapi is in r.in but not pinned" in p for p in problems)


def test_the_committed_lock_matches_requirements_in():
    assert lock_drift(REPO_ROOT / "requirements.in", REPO_ROOT / "requirements.lock") == []
