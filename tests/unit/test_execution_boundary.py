"""AGENT_04: the live-adapter boundary is closed by default, and the ruleset's new sections
(session, breaker severities, exposure limits) are validated with the field named."""

from __future__ import annotations

import pytest

from ark_runtime.execution.broker import (
    BrokerAdapter,
    BrokerFill,
    BrokerOrder,
    LiveAdapterRefused,
    require_paper,
)
from ark_runtime.hrm import RulesetError, load_ruleset, parse_ruleset
from ark_runtime.settings import SettingsError, load

pytestmark = pytest.mark.requirement("AGENT_04")


def test_paper_is_the_default_and_live_is_refused_while_no_adapter_ships() -> None:
    assert load({}).exec_mode == "paper"
    require_paper("paper")
    with pytest.raises(LiveAdapterRefused, match="none ships"):
        require_paper("live")
    with pytest.raises(SettingsError, match="ARK_EXEC_MODE"):
        load({"ARK_EXEC_MODE": "yolo"})


def test_an_adapter_is_anything_with_submit_cancel_and_fills() -> None:
    class Recorder:
        name = "recorder"

        def submit(self, order: BrokerOrder) -> str:
            return order.client_order_id

        def cancel(self, client_order_id: str) -> bool:
            return False

        def fills(self, since=None) -> list[BrokerFill]:
            return []

    assert isinstance(Recorder(), BrokerAdapter)
    assert not isinstance(object(), BrokerAdapter)


def test_the_trading_credentials_stay_in_their_own_domain() -> None:
    from ark_runtime.settings import UNITS, VARIABLES

    assert VARIABLES["TRADING_API_KEY"].domain == "trading"
    assert "trading" not in UNITS["executor"]  # paper needs no broker credentials


def doc(**breakers) -> dict:
    return {"version": "t", "strict_mode": False, "circuit_breakers": breakers,
            "rules": [{"id": "T-001", "severity": "error", "message": "m", "field": "x",
                       "operator": "exists"}]}


@pytest.mark.parametrize(("breakers", "named"), [
    ({"session_timezone": "Mars/Olympus"}, "session_timezone"),
    ({"session_reset": "25:00"}, "session_reset"),
    ({"severity": {"daily_loss": "fatal"}}, "severity.daily_loss"),
    ({"loss_streak_limit": 0}, "loss_streak_limit"),
])
def test_a_bad_breaker_setting_is_refused_naming_it(breakers, named) -> None:
    with pytest.raises(RulesetError) as err:
        parse_ruleset(doc(**breakers))
    assert named in str(err.value)


def test_the_packaged_ruleset_declares_breakers_session_and_exposure() -> None:
    rs = load_ruleset()
    assert rs.breakers.daily_loss_limit and rs.breakers.loss_streak_limit
    assert rs.breakers.session_timezone == "UTC"
    assert rs.exposure.per_symbol and rs.exposure.total
    bad = doc()
    bad["exposure_limits"] = {"per_symbol": 2}
    with pytest.raises(RulesetError, match="exposure_limits.per_symbol"):
        parse_ruleset(bad)
