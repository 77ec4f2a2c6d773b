"""HRM's risk state as everyone reads it (AGENT_04): breakers, P&L, streak, exposure.

HRM computes it from its store and sets it in Redis (`bus.keys.risk_state_key()`) in the
same atomic commit that acks the message that changed it, so the console, the metrics
exporter and `invoke` on any host read one state, the one HRM acted on, and an API host
without HRM's store shows the truth rather than nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ark_runtime.hrm.breakers import BREAKERS, BreakerState
from ark_runtime.hrm.ruleset import BreakerConfig, ExposureLimits

__all__ = ["RISK_STATE_VERSION", "parse_risk_state", "risk_state"]

RISK_STATE_VERSION = 1


def _limit(cfg: BreakerConfig, name: str) -> float | None:
    return cfg.daily_loss_limit if name == "daily_loss" else cfg.loss_streak_limit


def risk_state(state: BreakerState, cfg: BreakerConfig, limits: ExposureLimits,
               exposure: Mapping[str, float], positions_open: int,
               market_time: datetime | None, ruleset_version: str, *,
               open_pnl: float = 0.0, marked_at: str | None = None) -> dict[str, Any]:
    """The published document. `market_time`: the latest market time HRM has seen (the
    session the daily values are shown for); None: the state's own session. `open_pnl`: the
    open positions marked to market (hrm/open_pnl.py), `marked_at` the newest mark's time.
    Readers of an older HRM's document find no `open_pnl` and show it as unknown."""
    current = state.at(market_time, cfg)
    tripped = set(current.tripped(cfg))
    values = {"daily_loss": current.daily_loss(), "loss_streak": float(current.consecutive_losses)}
    return {
        "v": RISK_STATE_VERSION,
        "ruleset_version": ruleset_version,
        "session": current.day.isoformat(),
        "session_timezone": cfg.session_timezone,
        "breakers": {name: {"tripped": name in tripped, "value": values[name],
                            "limit": _limit(cfg, name), "severity": cfg.severity(name)}
                     for name in BREAKERS},
        "daily_pnl": current.daily_pnl,
        "realised_pnl": current.realised_pnl,
        "open_pnl": open_pnl,
        "marked_at": marked_at,
        "loss_streak": current.consecutive_losses,
        "size_multiplier": current.size_multiplier(cfg),
        "positions_open": positions_open,
        "positions_closed": current.positions_closed,
        "exposure": {"per_symbol": dict(sorted(exposure.items())),
                     "total": sum(exposure.values()),
                     "limits": {"per_symbol": limits.per_symbol, "total": limits.total}},
        "market_time": market_time.isoformat() if market_time else None,
        "updated_at": datetime.now(UTC).isoformat(),
    }


def parse_risk_state(raw: str | bytes | None) -> dict[str, Any] | None:
    """The published document, or None when there is none (HRM has not started) or it is
    unreadable (a reader shows "unknown", never a guess)."""
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("v") != RISK_STATE_VERSION:
        return None
    return doc

