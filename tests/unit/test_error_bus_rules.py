"""AGENT_02: who a critical error halts."""

from __future__ import annotations

import pytest

from ark_runtime.bus.errors import upstream_of
from ark_runtime.bus.streams import BusSettings


@pytest.mark.requirement("AGENT_02")
def test_critical_error_halts_everything_upstream() -> None:
    assert upstream_of("hrm") == ["kyle", "joey", "kenny"]
    assert upstream_of("kenny") == ["kyle", "joey"]
    assert upstream_of("joey") == ["kyle"]
    assert upstream_of("kyle") == ["kyle"]  # the source halts itself
    assert upstream_of("operator") == ["kyle"]


@pytest.mark.requirement("AGENT_02")
def test_bus_settings_from_env_refuse_nonsense() -> None:
    s = BusSettings.from_env({"ARK_BUS_MAX_DELIVERIES": "3", "ARK_BUS_CLAIM_MIN_IDLE_MS": "500"})
    assert (s.max_deliveries, s.claim_min_idle_ms) == (3, 500)
    with pytest.raises(ValueError, match="ARK_BUS_BATCH"):
        BusSettings.from_env({"ARK_BUS_BATCH": "many"})
    with pytest.raises(ValueError, match="must be > 0"):
        BusSettings.from_env({"ARK_BUS_MAX_DELIVERIES": "0"})
