"""LOG_03: `invoke alerts.silence` refuses a silence it cannot send as meant, naming the field,
before anything reaches Alertmanager."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ark_ops.fleet.alerts import Silence, SilenceRefused

pytestmark = pytest.mark.requirement("LOG_03")


def test_an_alert_silence_becomes_amtool_matchers() -> None:
    s = Silence.build("ArkAgentPaused", ["host=ark-prod-2", 'unit=~"ark-agent@.+"'], "2h",
                      " feed vendor outage, INC-42 ", "alice@ctl")
    assert s.matchers == ('alertname="ArkAgentPaused"', 'host="ark-prod-2"',
                          'unit=~"ark-agent@.+"')
    argv = s.amtool_argv("http://10.0.0.1:9093")
    assert argv[:5] == ["amtool", "--alertmanager.url=http://10.0.0.1:9093", "silence", "add",
                        "--output=simple"]
    assert "--comment=feed vendor outage, INC-42" in argv and "--author=alice@ctl" in argv
    assert "--duration=2h" in argv


def test_an_empty_silence_is_refused_it_would_mute_everything() -> None:
    with pytest.raises(SilenceRefused, match="--alert or at least one --match"):
        Silence.build("", [], "1h", "why", "a")


@pytest.mark.parametrize("field,kwargs", [
    ("--alert", {"alert": "Ark Agent"}),
    ("--match", {"matchers": ["host"]}),
    ("--match", {"matchers": ['host="a"b"']}),
    ("--duration", {"duration": "forever"}),
    ("--duration", {"duration": "-1h"}),
    ("--comment", {"comment": ""}),
    ("--comment", {"comment": "two\nlines"}),
])
def test_a_bad_field_is_refused_by_name(field: str, kwargs: dict) -> None:
    args = {"alert": "ArkAgentDown", "matchers": [], "duration": "1h", "comment": "why",
            "author": "a", **kwargs}
    with pytest.raises(SilenceRefused, match=field):
        Silence.build(**args)


@given(alert=st.text(max_size=40), match=st.text(max_size=60), duration=st.text(max_size=12),
       comment=st.text(max_size=80))
def test_any_input_is_a_silence_or_a_named_refusal(alert, match, duration, comment) -> None:
    try:
        s = Silence.build(alert, [match], duration, comment, "a")
    except SilenceRefused as exc:
        assert any(f in str(exc) for f in ("--alert", "--match", "--duration", "--comment"))
        return
    # What is sent is one argv element per matcher: no quoting can split or join them.
    for m in s.matchers:
        assert "\n" not in m and m.count('"') == 2
