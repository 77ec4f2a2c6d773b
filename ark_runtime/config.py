"""Connection settings for Redis and the API, derived from the typed settings.

The variables, their types and defaults are declared once in `ark_runtime.settings`; this
module only shapes them for the clients. `ARK_REDIS_URL`, when set, overrides each part it
gives (host, port, password, db; `rediss://` turns TLS on); a part the URL leaves out keeps
its own variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ark_runtime.redact import MASK
from ark_runtime.settings import ArkSettings, default_of, load


@dataclass(frozen=True)
class RedisSettings:
    host: str = default_of("ARK_REDIS_HOST")
    port: int = default_of("ARK_REDIS_PORT")
    password: str | None = None
    db: int = default_of("ARK_REDIS_DB")
    username: str | None = None
    ssl: bool = False

    def __repr__(self) -> str:  # never show the password
        shown = MASK if self.password else None
        return (f"RedisSettings(host={self.host!r}, port={self.port}, password={shown}, "
                f"db={self.db}, username={self.username!r}, ssl={self.ssl})")

    @classmethod
    def from_settings(cls, cfg: ArkSettings) -> RedisSettings:
        base = cls(host=cfg.redis_host, port=cfg.redis_port,
                   password=cfg.secret_value("redis_password"), db=cfg.redis_db,
                   username=cfg.redis_username)
        url = cfg.secret_value("redis_url")
        return base if not url else base.with_url(url)

    def with_url(self, url: str) -> RedisSettings:
        """This, overridden by each part `url` gives (validated by the settings layer)."""
        parts = urlsplit(url)
        db = parts.path.lstrip("/")
        return RedisSettings(
            host=parts.hostname or self.host,
            port=parts.port or self.port,
            password=unquote(parts.password) if parts.password else self.password,
            db=int(db) if db else self.db,
            username=unquote(parts.username) if parts.username else self.username,
            ssl=parts.scheme == "rediss",
        )


def redis_settings(env: Mapping[str, str] | None = None) -> RedisSettings:
    return RedisSettings.from_settings(load(env))


@dataclass(frozen=True)
class ApiSettings:
    host: str = default_of("ARK_API_HOST")
    port: int = default_of("ARK_API_PORT")
    trusted_proxies: str = ""


def api_settings(env: Mapping[str, str] | None = None) -> ApiSettings:
    cfg = load(env)
    return ApiSettings(host=cfg.api_host, port=cfg.api_port,
                       trusted_proxies=cfg.api_trusted_proxies)
