"""Where the host-side commands find things, from the environment the units give them.

One place so `ark snapshot`, `ark heal` and `ark dr` agree. Every path can be moved (tests,
a second install) with an environment variable; the defaults are the production layout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_STATE_DIR = "/var/lib/ark"
DEFAULT_LOG_DIR = "/var/log/ark"
DEFAULT_CONFIG_DIR = "/etc/ark"


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    return Path(_env(env).get("ARK_STATE_DIR") or DEFAULT_STATE_DIR)


def log_dir(env: Mapping[str, str] | None = None) -> Path:
    return Path(_env(env).get("ARK_LOG_DIR") or DEFAULT_LOG_DIR)


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    return Path(_env(env).get("ARK_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


def store_path(env: Mapping[str, str] | None = None) -> Path:
    """HRM's store: $ARK_STORE_PATH, else $ARK_STATE_DIR/memory.db (as ark_runtime.agents.hrm)."""
    e = _env(env)
    return Path(e.get("ARK_STORE_PATH") or state_dir(e) / "memory.db")


def snapshot_dir(env: Mapping[str, str] | None = None) -> Path:
    e = _env(env)
    return Path(e.get("ARK_SNAPSHOT_DIR") or state_dir(e) / "snapshots")


def ruleset_path(env: Mapping[str, str] | None = None) -> Path:
    """The ruleset HRM loads: $ARK_HRM_RULESET (units set it), else <config>/HRM_RULESET.yaml."""
    e = _env(env)
    return Path(e.get("ARK_HRM_RULESET") or config_dir(e) / "HRM_RULESET.yaml")


def panic_flag(env: Mapping[str, str] | None = None) -> Path:
    return state_dir(env) / "PANIC"


def audit_dir(env: Mapping[str, str] | None = None) -> Path:
    """SEC_03/GOV_01: the audit chain (root 0700; rotated by /etc/logrotate.d/ark)."""
    e = _env(env)
    if e.get("ARK_AUDIT_DIR") or e.get("ARK_LOG_DIR"):
        return Path(e.get("ARK_AUDIT_DIR") or log_dir(e) / "audit")
    # As heal's Layout: a test or second install moves the whole tree with a prefix.
    return Path(e.get("ARK_ROOT_PREFIX") or "/") / DEFAULT_LOG_DIR.lstrip("/") / "audit"

