"""HRM's circuit breakers as figures: tripped (suspended), size multiplier, loss streak."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from ark_runtime.hrm import BreakerState, load_ruleset

_ruleset_cache: dict[tuple[str | None, float], Any] = {}


def _config(ruleset: str | None) -> Any:
    """Breaker settings of the ruleset (None: the packaged one), reloaded when it changes."""
    key = (ruleset, Path(ruleset).stat().st_mtime if ruleset else 0.0)
    if key not in _ruleset_cache:
        _ruleset_cache.clear()
        _ruleset_cache[key] = load_ruleset(ruleset).breakers
    return _ruleset_cache[key]


def breaker_metrics(raw: dict | None, ruleset: str | None) -> Iterable[Metric]:
    state = BreakerState.model_validate(raw) if raw else BreakerState()
    config = _config(ruleset)
    tripped = GaugeMetricFamily("ark_breaker_tripped",
                                "1 while HRM's daily-loss breaker suspends new plans")
    tripped.add_metric([], 1.0 if state.suspended(config) else 0.0)
    size = GaugeMetricFamily("ark_breaker_size_multiplier",
                             "Position-size factor the loss-streak breaker applies (1 = none)")
    size.add_metric([], state.size_multiplier(config))
    streak = GaugeMetricFamily("ark_breaker_consecutive_losses", "Current losing streak")
    streak.add_metric([], float(state.consecutive_losses))
    loss = GaugeMetricFamily("ark_breaker_daily_loss_ratio",
                             "Today's realized paper loss, fraction of the account")
    loss.add_metric([], state.daily_loss())
    yield from (tripped, size, streak, loss)
