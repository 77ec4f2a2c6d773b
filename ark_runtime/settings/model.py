"""SEC_01: every environment variable ARK reads, declared once.

Each field: the variable's name, type, default, credential domain, who reads it and what
it means; sensitivity follows from the type (a secret is held as SecretStr). From this class
come the runtime's typed settings, `ark env check`, the env schema the deploy reads
(`ark_runtime/env.schema.yaml`) and the table in docs/AGENT_PROTOCOL.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Literal

from pydantic import BeforeValidator, SecretStr, StringConstraints
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ark_runtime import pipeline
from ark_runtime.settings.fields import (
    ALL_AGENTS,
    CONSUMERS,
    AbsPath,
    Host,
    Port,
    RedisUrl,
    SentinelList,
    TrueOnly,
    secret,
    text,
    var,
)

DOMAINS: dict[str, str] = {
    "infrastructure": "Addresses, ports, directories and the Redis password every unit needs",
    "api": "Secrets only the reasoning API holds (session/signing secret)",
    "telegram": "Telegram bot credentials for notifications",
    "llm": "Language-model provider credentials for the reasoning API",
    "trading": "Broker credentials (paper only; ARK never places an order)",
    "features": "Feature flags",
}

# Which credential domains each systemd unit loads. Only Kenny gets trading credentials.
UNITS: dict[str, list[str]] = {
    "api": ["infrastructure", "api", "llm", "telegram", "features"],
    **pipeline.unit_domains(),  # each agent's, from ark_runtime/pipeline.py
    "heal": ["infrastructure"],
    "snapshot": ["infrastructure"],
}

# Readers that are operator commands, not units: they run with infrastructure.env sourced.
# `read_by` names the code that reads a variable; `()` means the units receive it (their
# domains) for a feature not built yet, and only `ark env check` validates it.
COMMANDS = ("dr", "trace", "ports", "env-check")

FEATURE_PREFIX = "ARK_FEATURE_"
# Set while a mapping is validated alone (ArkSettings.of_mapping): no source but the mapping.
_MAPPING_ONLY: ContextVar[bool] = ContextVar("ark_settings_mapping_only", default=False)
_STAGED = ("staging", "production")
_REDIS_USERS = (*ALL_AGENTS, "api", "heal", "dr")  # dr: the Redis dump (issue #19 §5)
_ALL = (*UNITS, *COMMANDS)

LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
]


ApiSecret = secret(min_length=32)
RedisPassword = secret(min_length=16)
ProviderKey = secret(min_length=20)
BrokerCredential = secret(min_length=8)
TelegramToken = secret(pattern=r"^[0-9]{5,12}:[A-Za-z0-9_-]{30,}$")
ChatId = text(pattern=r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$")
ModelName = text(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")
UnixName = text(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
# A Redis ACL user name as ark_runtime/bus/acl.py makes them (kyle, joey-1, api, admin).
RedisUser = text(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
SentinelMaster = text(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ShortText = text(max_length=200)
SymbolList = text(max_length=1000)
AnyText = text()
# A hash tag goes between braces in key names: no braces, colons or spaces in it.
KeyTag = text(pattern=r"^[A-Za-z0-9_.-]{1,32}$", max_length=32)


class ArkSettings(BaseSettings):
    """The environment of one ARK process. Build it with `ark_runtime.settings.load()`."""

    # `ArkSettings()` reads the process environment (an empty value is unset) and, under
    # systemd, the unit's credentials directory (`_secrets_dir=`; load() passes it): the
    # library's own sources. `of_mapping(values)` checks a mapping alone (tests, env files)
    # with the same rules.
    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, hide_input_in_errors=True,
        validate_default=True, env_ignore_empty=True,
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _MAPPING_ONLY.get():
            return (init_settings,)
        return (env_settings, file_secret_settings)

    @classmethod
    def of_mapping(cls, values: Mapping[str, str]) -> ArkSettings:
        """The settings a mapping gives, the process's environment left out."""
        token = _MAPPING_ONLY.set(True)
        try:
            return cls(**values)
        finally:
            _MAPPING_ONLY.reset(token)

    # -- stage -----------------------------------------------------------------------------
    environment: Literal["development", "staging", "production"] = var(
        "ARK_ENVIRONMENT", "development", "Deployment stage; staging and production require "
        "the secrets marked required_in", read_by=("env-check",), required=True)

    # -- API and ports ---------------------------------------------------------------------
    api_host: Host = var("ARK_API_HOST", "127.0.0.1", "Address the reasoning API binds to",
                         read_by=("api",))
    api_port: Port = var("ARK_API_PORT", 8101, "TCP port of the reasoning API",
                         read_by=("api", "ports"))
    api_trusted_proxies: Annotated[str, StringConstraints(
        max_length=400, pattern=r"^[0-9A-Fa-f.:]+(,[0-9A-Fa-f.:]+)*$|^$")] = var(
        "ARK_API_TRUSTED_PROXIES", "",
        "TLS proxies whose X-Forwarded-For/-Proto the API believes (comma-separated)",
        read_by=("api",))
    # Issue #21: the console over HTTPS, served by uvicorn itself with the host's certificate.
    api_tls_dir: AbsPath | None = var(
        "ARK_API_TLS_DIR", None,
        "Console certificate and key (host.crt, host.key); set: HTTPS (LoadCredential=)",
        read_by=("api",))
    api_redirect_port: int = var(
        "ARK_API_REDIRECT_PORT", 0,
        "A plain-HTTP port that only redirects to the console's HTTPS (0: none)",
        read_by=("api",), ge=0, le=65535)
    metrics_port: Port = var(
        "ARK_METRICS_PORT", 9101,
        "TCP port reserved for Prometheus metrics (checked by the ports preflight)",
        read_by=("ports",))
    api_secret: ApiSecret | None = var(
        "ARK_API_SECRET", None,
        "Session/signing secret of the API and admin UI (at least 32 characters)",
        domain="api", read_by=(), required_in=_STAGED)

    # -- Redis -----------------------------------------------------------------------------
    redis_host: Host = var("ARK_REDIS_HOST", "127.0.0.1", "Redis server address",
                           read_by=_REDIS_USERS)
    redis_port: Port = var("ARK_REDIS_PORT", 6379, "Redis server port",
                           read_by=(*_REDIS_USERS, "ports"))
    redis_db: int = var("ARK_REDIS_DB", 0, "Redis logical database number",
                        read_by=_REDIS_USERS, ge=0, le=15)
    redis_username: RedisUser | None = var(
        "ARK_REDIS_USERNAME", None,
        "Redis ACL user to log in as (unset: the password alone, as requirepass)",
        read_by=_REDIS_USERS)
    redis_password: RedisPassword | None = var(
        "ARK_REDIS_PASSWORD", None,
        "Password of ARK_REDIS_USERNAME, else requirepass (at least 16 characters)",
        read_by=_REDIS_USERS, required_in=_STAGED)
    redis_url: RedisUrl | None = var(
        "ARK_REDIS_URL", None, "Redis URL (redis:// or rediss://); overrides ARK_REDIS_HOST/PORT/"
        "PASSWORD/DB", read_by=_REDIS_USERS)
    redis_tls_dir: AbsPath | None = var(
        "ARK_REDIS_TLS_DIR", None,
        "Redis TLS files (ca.crt, host.crt, host.key); set: TLS on. Units: LoadCredential=",
        read_by=_REDIS_USERS)
    redis_sentinels: SentinelList = var(
        "ARK_REDIS_SENTINELS", "",
        "Redis Sentinels, host:port,... (set: they name the primary, not ARK_REDIS_HOST)",
        read_by=_REDIS_USERS)
    redis_sentinel_master: SentinelMaster = var(
        "ARK_REDIS_SENTINEL_MASTER", "ark",
        "The name the Sentinels monitor this pipeline's primary under", read_by=_REDIS_USERS)

    # -- directories and files (resolved by ark_runtime.host.layout) -------------------------
    state_dir: AbsPath = var("ARK_STATE_DIR", "/var/lib/ark",
                             "Directory of the memory store, snapshots and boot state",
                             read_by=_ALL)
    log_dir: AbsPath = var("ARK_LOG_DIR", "/var/log/ark",
                           "Directory of the JSON logs (<agent>.log) and the audit log",
                           read_by=_ALL)
    audit_dir: AbsPath | None = var("ARK_AUDIT_DIR", None,
                                    "Directory of the tamper-evident admin audit chain",
                                    read_by=("heal", "snapshot", "dr"),
                                    default_text="$ARK_LOG_DIR/audit")
    audit_sink: Literal["journal", "stderr"] = var(
        "ARK_AUDIT_SINK", "journal",
        "journal (a host: root ingests the API's audit records) or stderr (a container)",
        read_by=("api",))
    audit_journal_socket: AbsPath | None = var(
        "ARK_AUDIT_JOURNAL_SOCKET", None,
        "journald's native socket, where the API sends its audit records",
        read_by=("api",), default_text="/run/systemd/journal/socket")
    config_history_dir: AbsPath | None = var(
        "ARK_CONFIG_HISTORY_DIR", None, "Directory of the numbered config versions (GOV_02)",
        read_by=("heal", "dr"), default_text="$ARK_STATE_DIR/config-history")
    correlation_id: str | None = var(
        "ARK_CORRELATION_ID", None, "The control node's action id, copied into host audit records",
        read_by=("heal", "snapshot", "dr"))
    config_dir: AbsPath = var("ARK_CONFIG_DIR", "/etc/ark",
                              "Directory of the configuration ARK reads (ruleset, env files)",
                              read_by=("heal", "snapshot", "dr"))
    run_dir: AbsPath | None = var("ARK_RUN_DIR", None, "Directory of the flock lock files",
                                  read_by=(*ALL_AGENTS, "snapshot"),
                                  default_text="/run/ark, else /var/lib/ark/locks")
    store_path: AbsPath | None = var("ARK_STORE_PATH", None, "HRM's SQLite memory store",
                                     read_by=("hrm", "heal", "snapshot", "dr", "trace"),
                                     default_text="$ARK_STATE_DIR/memory.db")
    snapshot_dir: AbsPath | None = var("ARK_SNAPSHOT_DIR", None, "Directory of the snapshots",
                                       read_by=("heal", "snapshot", "dr"),
                                       default_text="$ARK_STATE_DIR/snapshots")
    hrm_ruleset: AbsPath | None = var(
        "ARK_HRM_RULESET", None, "The HRM ruleset file (set by the units)",
        read_by=("hrm", "executor", "heal", "snapshot"),
        default_text="HRM: the packaged ruleset; host commands: "
                     "$ARK_CONFIG_DIR/HRM_RULESET.yaml")
    hrm_synchronous: Literal["FULL", "NORMAL"] = var(
        "ARK_HRM_SYNCHRONOUS", "FULL",
        "HRM fsync: FULL per batch; NORMAL (see docs) only at checkpoints",
        read_by=("hrm",))
    log_level: LogLevel = var("ARK_LOG_LEVEL", "INFO", "Log level", read_by=_ALL)

    # -- bus (AGENT_01/02) -----------------------------------------------------------------
    consumer_name: ShortText | None = var(
        "ARK_CONSUMER_NAME", None, "Consumer name in the agent's group", read_by=CONSUMERS,
        default_text="<agent>@<hostname>")
    bus_max_deliveries: int = var("ARK_BUS_MAX_DELIVERIES", 5,
                                  "Deliveries before a message is dead-lettered",
                                  read_by=CONSUMERS, gt=0)
    bus_claim_min_idle_ms: int = var(
        "ARK_BUS_CLAIM_MIN_IDLE_MS", 30_000,
        "Idle time (ms) before XAUTOCLAIM takes a pending message over", read_by=CONSUMERS, gt=0)
    bus_claim_every_s: float = var("ARK_BUS_CLAIM_EVERY_S", 5.0,
                                   "How often (s) to look for idle messages",
                                   read_by=CONSUMERS, gt=0, allow_inf_nan=False)
    bus_block_ms: int = var("ARK_BUS_BLOCK_MS", 500,
                            "XREADGROUP block (ms), capped at half the watchdog interval",
                            read_by=ALL_AGENTS, gt=0)
    bus_batch: int = var("ARK_BUS_BATCH", 64, "Messages per read / bars per emit",
                         read_by=ALL_AGENTS, gt=0)
    bus_maxlen: int = var("ARK_BUS_MAXLEN", 1_000_000, "XADD MAXLEN ~ safety cap of inboxes",
                          read_by=ALL_AGENTS, gt=0)
    bus_side_maxlen: int = var("ARK_BUS_SIDE_MAXLEN", 100_000,
                               "XADD MAXLEN ~ cap of the dead, errors and decisions streams",
                               read_by=ALL_AGENTS, gt=0)
    bus_key_tag: KeyTag | None = var(
        "ARK_BUS_KEY_TAG", None, "One hash tag on every bus key (Redis Cluster), e.g. ark",
        read_by=(*ALL_AGENTS, "api"))
    # Not the exactly-once guard (the pending entry is: docs/AGENT_PROTOCOL.md, "Bounded
    # memory"): a mark is a record of recent work and the fast path that skips a redelivery,
    # so its memory is rate x lifetime (225 B a mark: 27 MB per 1,000 bars/s at 120 s).
    bus_dedup_ttl_s: int = var("ARK_BUS_DEDUP_TTL_S", 120,
                               "Lifetime (s) of the recent-work marks (not the dedup guard)",
                               read_by=CONSUMERS, gt=0, le=7 * 24 * 3600)
    # Issue #20: after each commit, WAIT for this many replicas before going on (0: do not).
    bus_wait_replicas: int = var(
        "ARK_BUS_WAIT_REPLICAS", 0,
        "Replicas each commit waits for before the agent goes on (WAIT; 0: off)",
        read_by=ALL_AGENTS, ge=0, le=5)
    bus_wait_timeout_ms: int = var(
        "ARK_BUS_WAIT_TIMEOUT_MS", 1000,
        "How long a commit waits for its replicas (ms) before it is logged as not replicated",
        read_by=ALL_AGENTS, gt=0, le=60_000)

    # -- Kyle's feed -----------------------------------------------------------------------
    feed: Literal["replay", "synthetic", "sample"] | None = var(
        "ARK_FEED", None, "Feed kind: replay, synthetic or sample", read_by=("kyle",),
        default_text="replay if ARK_FEED_PATH is set, else sample")
    feed_path: AnyText | None = var(
        "ARK_FEED_PATH", None, "Replay file (.jsonl/.csv); must resolve inside ARK_FEED_DIR",
        read_by=("kyle",))
    feed_dir: AbsPath | None = var("ARK_FEED_DIR", None, "Directory replay files must be in",
                                   read_by=("kyle",), default_text="$ARK_STATE_DIR/feeds")
    feed_symbols: SymbolList = var(
        "ARK_FEED_SYMBOLS", "AAPL,MSFT,BTC-USD", "Synthetic feed: comma-separated symbols",
        read_by=("kyle",))
    feed_seed: int = var("ARK_FEED_SEED", 0, "Synthetic feed: random seed", read_by=("kyle",),
                         ge=0, le=2**63 - 1)
    feed_bars: int = var("ARK_FEED_BARS", 500, "Synthetic feed: bars per symbol",
                         read_by=("kyle",), ge=0, le=10_000_000)
    feed_rate: float = var("ARK_FEED_RATE", 0.0, "Bars per second (0 = unpaced)",
                           read_by=("kyle",), ge=0, allow_inf_nan=False)
    kyle_max_backlog: int = var("ARK_KYLE_MAX_BACKLOG", 100_000,
                                "Pause emitting while Joey's inbox is longer (0 = never)",
                                read_by=("kyle",), ge=0)
    bar_ttl: int = var("ARK_BAR_TTL", 3600, "ttl of market.bar messages (s)",
                       read_by=("kyle",), ge=1, le=7 * 24 * 3600)

    # -- Joey, Kenny -----------------------------------------------------------------------
    joey_window: int = var("ARK_JOEY_WINDOW", 60, "Bars per symbol in Joey's rolling window",
                           read_by=("joey",), ge=1, le=100_000)
    joey_shards: int = var("ARK_JOEY_SHARDS", 1,
                           "Joey shards (own inbox each); Kyle routes a bar by crc32(symbol)",
                           read_by=("kyle", "joey"), ge=1, le=64)
    account_size: float = var("ARK_ACCOUNT_SIZE", 100_000.0, "Paper account size for sizing",
                              read_by=("kenny",), gt=0, allow_inf_nan=False)
    risk_per_trade: float = var("ARK_RISK_PER_TRADE", 0.01, "Fraction of the account risked "
                                "per trade", read_by=("kenny",), gt=0, le=0.1)

    # -- memory.db retention (store_schema.py says what audit needs) -----------------------
    store_retain_processed_days: float = var(
        "ARK_STORE_RETAIN_PROCESSED_DAYS", 14.0,
        "Days HRM keeps idempotency marks (must outlast ARK_BUS_DEDUP_TTL_S)",
        read_by=("hrm",), ge=1, le=3650, allow_inf_nan=False)
    store_retain_decisions_days: float = var(
        "ARK_STORE_RETAIN_DECISIONS_DAYS", 400.0,
        "Days HRM keeps decisions (audit: at least 365; open positions' always)",
        read_by=("hrm",), ge=365, le=36500, allow_inf_nan=False)
    store_retain_ledger_days: float = var(
        "ARK_STORE_RETAIN_LEDGER_DAYS", 400.0,
        "Days HRM keeps closed positions (audit: at least 365; open ones always)",
        read_by=("hrm",), ge=365, le=36500, allow_inf_nan=False)
    store_retain_objects_days: float = var(
        "ARK_STORE_RETAIN_OBJECTS_DAYS", 14.0,
        "Days HRM keeps payloads no kept decision or position refers to",
        read_by=("hrm",), ge=1, le=36500, allow_inf_nan=False)
    store_prune_every_s: float = var(
        "ARK_STORE_PRUNE_EVERY_S", 3600.0, "Seconds between HRM's retention sweeps of memory.db",
        read_by=("hrm",), ge=10, le=86400, allow_inf_nan=False)

    # -- the executor (AGENT_04) ----------------------------------------------------------
    exec_mode: Literal["paper", "live"] = var(
        "ARK_EXEC_MODE", "paper",
        "paper: fills simulated from the bars; live is refused (no broker adapter ships)",
        read_by=("executor",))
    exec_slippage_bps: float = var(
        "ARK_EXEC_SLIPPAGE_BPS", 2.0, "Paper fills: adverse slippage, basis points of price",
        read_by=("executor",), ge=0, le=500, allow_inf_nan=False)
    exec_fee_bps: float = var(
        "ARK_EXEC_FEE_BPS", 1.0, "Paper fills: fee per side, basis points of notional",
        read_by=("executor",), ge=0, le=500, allow_inf_nan=False)
    exec_bar_history: int = var(
        "ARK_EXEC_BAR_HISTORY", 64,
        "Bars per symbol the executor keeps for approvals arriving after their fill bar",
        read_by=("executor",), ge=2, le=10_000)

    # -- host operations -------------------------------------------------------------------
    snapshot_keep_last: int = var("ARK_SNAPSHOT_KEEP_LAST", 10, "Snapshots kept: newest N",
                                  read_by=("snapshot",), ge=0)
    snapshot_keep_hourly: int = var("ARK_SNAPSHOT_KEEP_HOURLY", 24,
                                    "Snapshots kept: one per hour for N hours",
                                    read_by=("snapshot",), ge=0)
    snapshot_keep_daily: int = var("ARK_SNAPSHOT_KEEP_DAILY", 7,
                                   "Snapshots kept: one per day for N days",
                                   read_by=("snapshot",), ge=0)
    dr_snapshots: int = var("ARK_DR_SNAPSHOTS", 3, "Newest verified snapshots in a DR bundle",
                            read_by=("dr",), ge=0)
    root_prefix: AbsPath | None = var("ARK_ROOT_PREFIX", None, "Moves /opt/ark, /etc/ark, "
                                      "/var/lib/ark, /var/log/ark under a prefix (tests)",
                                      read_by=("heal", "dr"), default_text="/")
    unit_dir: AbsPath | None = var("ARK_UNIT_DIR", None, "systemd unit directory (DR bundles)",
                                   read_by=("dr",), default_text="/etc/systemd/system")
    venv: AbsPath | None = var("ARK_VENV", None, "The runtime's venv", read_by=("heal",),
                               default_text="/opt/ark/venv")
    runtime_lock: AbsPath | None = var("ARK_RUNTIME_LOCK", None,
                                       "The lock the venv is checked against",
                                       read_by=("heal",),
                                       default_text="/opt/ark/wheelhouse/runtime.lock")
    user: UnixName = var(
        "ARK_USER", "ark", "System user ARK runs as", read_by=("heal",))
    group: UnixName = var(
        "ARK_GROUP", "ark", "System group of ARK", read_by=("heal",))
    actor: ShortText | None = var(
        "ARK_ACTOR", None, "Who asked for a repair or a cleared panic (recorded)",
        read_by=("heal",), default_text="$SUDO_USER, else the login name")

    # -- credentials of other domains ------------------------------------------------------
    telegram_bot_token: TelegramToken | None = var(
        "TELEGRAM_BOT_TOKEN", None, "Bot token from BotFather (digits, colon, secret)",
        domain="telegram", read_by=())
    telegram_chat_id: ChatId | None = var(
        "TELEGRAM_CHAT_ID", None,
        "Chat or channel that receives notifications (numeric id or @channel)",
        domain="telegram", read_by=())
    llm_provider: Literal["none", "openai", "anthropic"] = var(
        "LLM_PROVIDER", "none", "Which provider the reasoning API calls; none disables LLM "
        "reasoning", domain="llm", read_by=())
    llm_model: ModelName | None = var(
        "LLM_MODEL", None, "Model name passed to the provider", domain="llm", read_by=())
    openai_api_key: ProviderKey | None = var(
        "OPENAI_API_KEY", None, "OpenAI API key (needed when LLM_PROVIDER=openai)",
        domain="llm", read_by=(), required_if={"LLM_PROVIDER": "openai"})
    anthropic_api_key: ProviderKey | None = var(
        "ANTHROPIC_API_KEY", None, "Anthropic API key (needed when LLM_PROVIDER=anthropic)",
        domain="llm", read_by=(), required_if={"LLM_PROVIDER": "anthropic"})
    trading_api_key: BrokerCredential | None = var(
        "TRADING_API_KEY", None, "Broker API key (market data only; orders are never placed)",
        domain="trading", read_by=())
    trading_api_secret: BrokerCredential | None = var(
        "TRADING_API_SECRET", None, "Broker API secret", domain="trading", read_by=())
    trading_paper_only: TrueOnly = var(
        "TRADING_PAPER_ONLY", True,
        "Must be true; ARK is a paper-trading system and refuses anything else",
        domain="trading", read_by=())

    # -- feature flags (any other ARK_FEATURE_* is a boolean flag too) ---------------------
    feature_admin_ui: bool = var("ARK_FEATURE_ADMIN_UI", True,
                                 "Serve the admin overlay of the control panel",
                                 domain="features", read_by=())
    feature_chatter_feed: bool = var("ARK_FEATURE_CHATTER_FEED", True,
                                     "Serve the WebSocket feed of agent messages",
                                     domain="features", read_by=())

    def secret_value(self, field: str) -> str | None:
        value = getattr(self, field)
        return value.get_secret_value() if isinstance(value, SecretStr) else value
