"""Runtime settings, read from the environment systemd gives each unit.

Units load them from /etc/ark/env/*.env (one file per credential domain); the
names and types are declared in `.env.schema`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class RedisSettings:
    host: str = "127.0.0.1"
    port: int = 6379
    password: str | None = None
    db: int = 0


def redis_settings(env: dict[str, str] | None = None) -> RedisSettings:
    env = os.environ if env is None else env
    return RedisSettings(
        host=env.get("ARK_REDIS_HOST", "127.0.0.1"),
        port=int(env.get("ARK_REDIS_PORT", "6379")),
        password=env.get("ARK_REDIS_PASSWORD") or None,
        db=int(env.get("ARK_REDIS_DB", "0")),
    )


@dataclass(frozen=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = 8101


def api_settings(env: dict[str, str] | None = None) -> ApiSettings:
    env = os.environ if env is None else env
    return ApiSettings(
        host=env.get("ARK_API_HOST", "127.0.0.1"),
        port=int(env.get("ARK_API_PORT", "8101")),
    )
