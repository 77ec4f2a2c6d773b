"""Where everything ARK uses lives on a host: the ONE path resolver.

`ark snapshot`, `ark heal`, `ark dr`, the agents' log files and component locks all ask here, so
they agree. Every path can be moved (tests, a second install) with an environment variable; the
defaults are the production layout. ARK_ROOT_PREFIX moves the whole production tree (/opt/ark,
/etc/ark, /var/lib/ark, /var/log/ark, /run/ark) under another directory so tests run without
root and without touching /.

The path variables are declared in ark_runtime/settings/model.py like every other; this module
takes them from the settings layer in `path_settings()` and derives the defaults that depend on
each other (the store under the state dir, everything under ARK_ROOT_PREFIX).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ark_runtime.settings import declared, systemd_var

DEFAULT_STATE_DIR = "/var/lib/ark"
DEFAULT_LOG_DIR = "/var/log/ark"
DEFAULT_CONFIG_DIR = "/etc/ark"
DEFAULT_RUN_DIRS = ("/run/ark", "/var/lib/ark/locks")
SNAPSHOT_KEY_NAME = "snapshot.key"
SNAPSHOT_KEY_CREDENTIAL = "snapshot-key"  # LoadCredential= name in the units

# Every path variable the runtime honours.
PATH_VARIABLES = (
    "ARK_ROOT_PREFIX", "ARK_STATE_DIR", "ARK_LOG_DIR", "ARK_CONFIG_DIR", "ARK_STORE_PATH",
    "ARK_SNAPSHOT_DIR", "ARK_VENV", "ARK_RUNTIME_LOCK", "ARK_HRM_RULESET", "ARK_UNIT_DIR",
    "ARK_RUN_DIR", "ARK_USER", "ARK_GROUP", "CREDENTIALS_DIRECTORY", "ARK_AUDIT_DIR",
    "ARK_CONFIG_HISTORY_DIR", "ARK_AUDIT_JOURNAL_SOCKET",
)


def path_settings(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The path settings that are set (non-empty), from the settings layer's view of the
    process environment; `env` replaces it (tests, a unit's env file)."""
    # systemd's credentials directory is systemd's variable, not a declared one.
    source = {**declared(), "CREDENTIALS_DIRECTORY": systemd_var("CREDENTIALS_DIRECTORY") or ""} \
        if env is None else env
    return {k: source[k] for k in PATH_VARIABLES if source.get(k)}


@dataclass(frozen=True)
class DirSpec:
    path: Path
    owner: str
    group: str
    mode: int


@dataclass(frozen=True)
class Layout:
    prefix: Path
    state: Path
    log: Path
    config: Path
    store: Path
    snapshots: Path
    venv: Path
    lock: Path
    ruleset: Path
    units: Path
    run_dirs: tuple[Path, ...]
    credentials: Path | None
    audit: Path
    audit_journal_socket: Path
    user: str
    group: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, prefix: str | None = None) -> Layout:
        return resolve(env, prefix)

    @property
    def lkg(self) -> Path:
        return self.state / "lkg"

    @property
    def panic_flag(self) -> Path:
        return self.state / "PANIC"

    @property
    def snapshot_key(self) -> Path:
        """Root-only HMAC key for snapshot manifests (see host/snapshot/manifest.py)."""
        return self.config / SNAPSHOT_KEY_NAME

    @property
    def run(self) -> Path:
        """Component locks (INFRA_02): the first of the candidates this process can write,
        else the last one (the error then names it)."""
        if len(self.run_dirs) == 1:
            return self.run_dirs[0]
        for candidate in self.run_dirs:
            if os.access(candidate, os.W_OK):
                return candidate
        return self.run_dirs[-1]

    def dirs(self) -> list[DirSpec]:
        """The directory table (DEPLOY_01 sets it up; heal keeps it so). /etc/ark/env is
        root-only: the env files hold secrets and systemd reads them as root."""
        u, g = self.user, self.group
        return [
            DirSpec(self.prefix / "opt/ark", "root", "root", 0o755),
            DirSpec(self.config, "root", g, 0o750),
            DirSpec(self.config / "env", "root", "root", 0o700),
            # Group-writable: the API runs as its own user in group ark and writes the
            # panic flag here (issue 21); the exporter, also in the group, has it read-only.
            DirSpec(self.state, u, g, 0o770),
            DirSpec(self.log, u, g, 0o750),
            # SEC_03: root-only, so the services (user ark) cannot rewrite their own audit trail
            DirSpec(self.audit, "root", "root", 0o700),
        ]


def resolve(env: Mapping[str, str] | None = None, prefix: str | None = None) -> Layout:
    s = path_settings(env)
    pre = Path(prefix if prefix is not None else s.get("ARK_ROOT_PREFIX", "/"))

    def under(p: str) -> Path:
        return pre / p.lstrip("/")

    state = Path(s.get("ARK_STATE_DIR") or under(DEFAULT_STATE_DIR))
    config = Path(s.get("ARK_CONFIG_DIR") or under(DEFAULT_CONFIG_DIR))
    run_dirs = ((Path(s["ARK_RUN_DIR"]),) if "ARK_RUN_DIR" in s
                else tuple(under(d) for d in DEFAULT_RUN_DIRS))
    creds = s.get("CREDENTIALS_DIRECTORY")
    log = Path(s.get("ARK_LOG_DIR") or under(DEFAULT_LOG_DIR))
    return Layout(
        prefix=pre,
        state=state,
        log=log,
        config=config,
        store=Path(s.get("ARK_STORE_PATH") or state / "memory.db"),
        snapshots=Path(s.get("ARK_SNAPSHOT_DIR") or state / "snapshots"),
        venv=Path(s.get("ARK_VENV") or under("/opt/ark/venv")),
        lock=Path(s.get("ARK_RUNTIME_LOCK") or under("/opt/ark/wheelhouse/runtime.lock")),
        ruleset=Path(s.get("ARK_HRM_RULESET") or config / "HRM_RULESET.yaml"),
        units=Path(s.get("ARK_UNIT_DIR") or under("/etc/systemd/system")),
        run_dirs=run_dirs,
        credentials=Path(creds) if creds else None,
        audit=Path(s.get("ARK_AUDIT_DIR") or log / "audit"),
        audit_journal_socket=Path(s.get("ARK_AUDIT_JOURNAL_SOCKET")
                                  or "/run/systemd/journal/socket"),
        user=s.get("ARK_USER") or "ark",
        group=s.get("ARK_GROUP") or "ark",
    )


# Short forms for callers that need one path.


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    return resolve(env).state


def log_dir(env: Mapping[str, str] | None = None) -> Path:
    return resolve(env).log


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    return resolve(env).config


def store_path(env: Mapping[str, str] | None = None) -> Path:
    """HRM's store: $ARK_STORE_PATH, else $ARK_STATE_DIR/memory.db."""
    return resolve(env).store


def snapshot_dir(env: Mapping[str, str] | None = None) -> Path:
    return resolve(env).snapshots


def panic_flag(env: Mapping[str, str] | None = None) -> Path:
    return resolve(env).panic_flag


def run_dir(env: Mapping[str, str] | None = None) -> Path:
    """$ARK_RUN_DIR, else /run/ark (RuntimeDirectory=ark), else /var/lib/ark/locks."""
    return resolve(env).run


def audit_dir(env: Mapping[str, str] | None = None) -> Path:
    """SEC_03/GOV_01: the audit chain (root 0700; rotated by /etc/logrotate.d/ark)."""
    return resolve(env).audit
