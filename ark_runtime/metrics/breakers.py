"""HRM's risk state as figures (AGENT_04), read from the state HRM publishes in Redis
(hrm/risk.py): reported by the exporter that reports the bus (the Redis host's), so every
figure comes from the one state HRM acted on, wherever HRM runs.

No document (HRM has not run against this Redis) means no figures: an absent series, not a
zero that would read as "not tripped".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def risk_metrics(doc: Mapping[str, Any] | None) -> Iterable[Metric]:
    if not doc:
        return
    tripped = GaugeMetricFamily("ark_hrm_breaker_tripped",
                                "1 while the HRM breaker rejects every new plan",
                                labels=["breaker"])
    value = GaugeMetricFamily("ark_hrm_breaker_value",
                              "The value the breaker trips on (daily loss fraction, streak)",
                              labels=["breaker"])
    for name, breaker in sorted(doc["breakers"].items()):
        tripped.add_metric([name], 1.0 if breaker["tripped"] else 0.0)
        value.add_metric([name], float(breaker["value"]))
    yield tripped
    yield value
    for name, help_text, key in (
            ("ark_hrm_positions_open", "Open paper positions (approved, not yet closed)",
             "positions_open"),
            ("ark_hrm_realised_pnl", "Realised paper P&L since the store began, fraction of "
             "the account", "realised_pnl"),
            ("ark_hrm_daily_pnl", "Realised paper P&L this session, fraction of the account",
             "daily_pnl"),
            ("ark_hrm_loss_streak", "Consecutive losing trades", "loss_streak"),
            ("ark_hrm_size_multiplier", "Position-size factor of the loss-streak rule",
             "size_multiplier")):
        gauge = GaugeMetricFamily(name, help_text)
        gauge.add_metric([], float(doc[key]))
        yield gauge
    exposure = GaugeMetricFamily("ark_hrm_exposure", "Open exposure, fraction of the account",
                                 labels=["symbol"])
    for symbol, size in doc["exposure"]["per_symbol"].items():
        exposure.add_metric([symbol], float(size))
    yield exposure
    total = GaugeMetricFamily("ark_hrm_exposure_total", "Open exposure in total, fraction of "
                              "the account")
    total.add_metric([], float(doc["exposure"]["total"]))
    yield total
    if doc.get("open_pnl") is not None:  # absent from an HRM older than the figure
        open_pnl = GaugeMetricFamily("ark_hrm_open_pnl", "Open paper P&L, the open positions "
                                     "marked to their symbol's last bar close, net of the "
                                     "executor's costs, fraction of the account")
        open_pnl.add_metric([], float(doc["open_pnl"]))
        yield open_pnl
    closed = CounterMetricFamily("ark_hrm_positions_closed", "Paper positions closed")
    closed.add_metric([], float(doc["positions_closed"]))
    yield closed
