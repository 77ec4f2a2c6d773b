"""The four agents (Kyle -> Joey -> Kenny -> HRM) and the runtime loop they share."""

from __future__ import annotations

AGENTS = ("kyle", "joey", "kenny", "hrm")


def agent_class(name: str) -> type:
    """The class for `name` (imported lazily: each process loads only its own agent)."""
    from ark_runtime.validators import validate_agent_name

    name = validate_agent_name(name)
    if name == "kyle":
        from ark_runtime.agents.kyle import Kyle

        return Kyle
    if name == "joey":
        from ark_runtime.agents.joey import Joey

        return Joey
    if name == "kenny":
        from ark_runtime.agents.kenny import Kenny

        return Kenny
    from ark_runtime.agents.hrm import Hrm

    return Hrm


# What each agent reads from its environment (rendered into docs/AGENT_PROTOCOL.md).
# name -> (agents, default, meaning)
ENVIRONMENT: dict[str, tuple[str, str, str]] = {
    "ARK_REDIS_HOST / _PORT / _PASSWORD / _DB": ("all", "127.0.0.1 / 6379 / - / 0",
                                                 "the Redis holding the streams"),
    "ARK_STATE_DIR": ("all", "/var/lib/ark", "state; HRM's store is memory.db in it"),
    "ARK_STORE_PATH": ("hrm", "$ARK_STATE_DIR/memory.db", "the SQLite memory store"),
    "ARK_LOG_DIR": ("all", "/var/log/ark", "JSON log file <agent>.log (read by ark trace)"),
    "ARK_LOG_LEVEL": ("all", "INFO", "log level"),
    "ARK_RUN_DIR": ("all", "/run/ark, else /var/lib/ark/locks", "flock lock files"),
    "ARK_CONSUMER_NAME": ("joey, kenny, hrm", "<agent>@<hostname>", "consumer name in the group"),
    "ARK_BUS_MAX_DELIVERIES": ("joey, kenny, hrm", "5", "deliveries before dead-lettering"),
    "ARK_BUS_CLAIM_MIN_IDLE_MS": ("joey, kenny, hrm", "30000",
                                  "idle time before XAUTOCLAIM takes a message over"),
    "ARK_BUS_CLAIM_EVERY_S": ("joey, kenny, hrm", "5", "how often to look for idle messages"),
    "ARK_BUS_BLOCK_MS": ("all", "500", "XREADGROUP block (capped at half the watchdog)"),
    "ARK_BUS_BATCH": ("all", "64", "messages per read / bars per emit"),
    "ARK_BUS_MAXLEN / _SIDE_MAXLEN": ("all", "1000000 / 100000", "XADD MAXLEN ~ safety caps"),
    "ARK_BUS_DEDUP_TTL_S": ("joey, kenny, hrm", "604800", "lifetime of idempotency marks"),
    "ARK_FEED": ("kyle", "replay if ARK_FEED_PATH else sample", "replay | synthetic | sample"),
    "ARK_FEED_PATH / ARK_FEED_DIR": ("kyle", "- / $ARK_STATE_DIR/feeds",
                                     "replay file (.jsonl/.csv), must resolve inside the dir"),
    "ARK_FEED_SYMBOLS / _SEED / _BARS": ("kyle", "AAPL,MSFT,BTC-USD / 0 / 500",
                                         "synthetic feed parameters"),
    "ARK_FEED_RATE": ("kyle", "0 (unpaced)", "bars per second"),
    "ARK_KYLE_MAX_BACKLOG": ("kyle", "100000", "pause emitting while Joey's inbox is longer"),
    "ARK_BAR_TTL": ("kyle", "3600", "ttl of market.bar messages, seconds"),
    "ARK_JOEY_WINDOW": ("joey", "60", "bars per symbol in the rolling window"),
    "ARK_ACCOUNT_SIZE / ARK_RISK_PER_TRADE": ("kenny", "100000 / 0.01", "position sizing"),
    "ARK_HRM_RULESET": ("hrm", "packaged HRM_RULESET.yaml", "ruleset file"),
    "NOTIFY_SOCKET / WATCHDOG_USEC": ("all", "set by systemd", "sd_notify and watchdog"),
}
