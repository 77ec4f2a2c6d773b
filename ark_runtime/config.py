"""Connection settings for Redis and the API, derived from the typed settings.

The variables, their types and defaults are declared once in `ark_runtime.settings`; this
module only shapes them for the clients. `ARK_REDIS_URL`, when set, overrides each part it
gives (host, port, password, db; `rediss://` turns TLS on); a part the URL leaves out keeps
its own variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from ark_runtime.redact import MASK
from ark_runtime.settings import ArkSettings, credentials_dir, default_of, load
from ark_runtime.settings.fields import sentinel_addresses

# Issue #19 §4: a unit gets its host's TLS files as credentials (LoadCredential=NAME:PATH),
# so the key is never readable by its user; root tools read ARK_REDIS_TLS_DIR's files.
TLS_CREDENTIALS = {"ca": "redis-tls-ca", "cert": "redis-tls-cert", "key": "redis-tls-key"}
TLS_FILES = {"ca": "ca.crt", "cert": "host.crt", "key": "host.key"}


@dataclass(frozen=True)
class TlsFiles:
    ca: str
    cert: str
    key: str

    @classmethod
    def find(cls, tls_dir: str | None, creds: str | None) -> TlsFiles | None:
        """The unit's credentials when it has them, else the directory's files; None: off."""
        if creds and all(os.path.exists(os.path.join(creds, n)) for n in TLS_CREDENTIALS.values()):
            return cls(**{k: os.path.join(creds, n) for k, n in TLS_CREDENTIALS.items()})
        if tls_dir:
            return cls(**{k: os.path.join(tls_dir, n) for k, n in TLS_FILES.items()})
        return None


@dataclass(frozen=True)
class RedisSettings:
    host: str = default_of("ARK_REDIS_HOST")
    port: int = default_of("ARK_REDIS_PORT")
    password: str | None = None
    db: int = default_of("ARK_REDIS_DB")
    username: str | None = None
    ssl: bool = False
    tls: TlsFiles | None = None  # the CA and this host's certificate and key (ssl=True)
    # Issue #20: with Sentinels, host/port are not used: the primary is asked of them.
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = default_of("ARK_REDIS_SENTINEL_MASTER")

    def __repr__(self) -> str:  # never show the password
        shown = MASK if self.password else None
        return (f"RedisSettings(host={self.host!r}, port={self.port}, password={shown}, "
                f"db={self.db}, username={self.username!r}, ssl={self.ssl}, "
                f"sentinels={self.sentinels!r}, sentinel_master={self.sentinel_master!r})")

    @classmethod
    def from_settings(cls, cfg: ArkSettings) -> RedisSettings:
        tls = TlsFiles.find(str(cfg.redis_tls_dir) if cfg.redis_tls_dir else None,
                            credentials_dir())
        base = cls(host=cfg.redis_host, port=cfg.redis_port,
                   password=cfg.secret_value("redis_password"), db=cfg.redis_db,
                   username=cfg.redis_username)
        url = cfg.secret_value("redis_url")
        base = base if not url else base.with_url(url)
        base = replace(base, sentinels=parse_sentinels(cfg.redis_sentinels),
                       sentinel_master=cfg.redis_sentinel_master)
        return replace(base, ssl=True, tls=tls) if tls else base

    def client_kwargs(self) -> dict[str, Any]:
        """The connection arguments of redis-py's Redis (sync and asyncio alike)."""
        kw: dict[str, Any] = {"host": self.host, "port": self.port, "password": self.password,
                              "db": self.db, "username": self.username, "ssl": self.ssl}
        if self.ssl and self.tls:
            # The server's certificate must come from the fleet's CA and name the address
            # dialled; ours proves this host to Redis (tls-auth-clients yes).
            kw |= {"ssl_ca_certs": self.tls.ca, "ssl_certfile": self.tls.cert,
                   "ssl_keyfile": self.tls.key, "ssl_cert_reqs": "required",
                   "ssl_check_hostname": True}
        return kw

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


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """ARK_REDIS_SENTINELS as (host, port) pairs, by the settings layer's own reading."""
    return tuple(sentinel_addresses(text))


def redis_settings(env: Mapping[str, str] | None = None) -> RedisSettings:
    return RedisSettings.from_settings(load(env))


# Issue #21: ark-api.service gets the host's certificate and key as credentials, so the
# key is never readable by its user; without them, ARK_API_TLS_DIR's files.
API_TLS_CREDENTIALS = {"cert": "api-tls-cert", "key": "api-tls-key"}


@dataclass(frozen=True)
class ApiTls:
    cert: str
    key: str

    @classmethod
    def find(cls, tls_dir: str | None, creds: str | None) -> ApiTls | None:
        """The unit's credentials when it has them, else the directory's; None: plain HTTP."""
        if creds and all(os.path.exists(os.path.join(creds, n))
                         for n in API_TLS_CREDENTIALS.values()):
            return cls(**{k: os.path.join(creds, n) for k, n in API_TLS_CREDENTIALS.items()})
        if tls_dir:
            return cls(cert=os.path.join(tls_dir, TLS_FILES["cert"]),
                       key=os.path.join(tls_dir, TLS_FILES["key"]))
        return None


@dataclass(frozen=True)
class ApiSettings:
    host: str = default_of("ARK_API_HOST")
    port: int = default_of("ARK_API_PORT")
    trusted_proxies: str = ""
    tls: ApiTls | None = None  # set: the console speaks HTTPS only
    redirect_port: int = 0  # with tls: a plain-HTTP listener that only redirects (0: none)


def api_settings(env: Mapping[str, str] | None = None) -> ApiSettings:
    cfg = load(env)
    tls = ApiTls.find(str(cfg.api_tls_dir) if cfg.api_tls_dir else None, credentials_dir())
    return ApiSettings(host=cfg.api_host, port=cfg.api_port,
                       trusted_proxies=cfg.api_trusted_proxies, tls=tls,
                       redirect_port=cfg.api_redirect_port if tls else 0)
