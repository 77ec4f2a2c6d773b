"""LOG_03: the exporter's sources, each on its own (no Redis, no systemd needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ark_runtime.metrics.base import Guarded, Source
from ark_runtime.metrics.host import tree_bytes
from ark_runtime.metrics.server import ListenError, parse_listen
from ark_runtime.metrics.state import last_heal
from ark_runtime.metrics.tally import error_labels
from ark_runtime.metrics.units import UnitsSource, agent_of, parse_show

# `systemctl show --property=... ark-agent@kyle.service ark-agent@joey.service` on a host.
SHOW = """Id=ark-agent@kyle.service
LoadState=loaded
ActiveState=active
SubState=running
MainPID={pid}
NRestarts=2
WatchdogTimestampMonotonic=95000000

Id=ark-agent@joey.service
LoadState=loaded
ActiveState=failed
SubState=failed
MainPID=0
NRestarts=5
WatchdogTimestampMonotonic=0
"""


def exposition(*sources: Source) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Guarded(list(sources)))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.mark.requirement("LOG_03")
def test_units_source_reports_state_restarts_usage_and_heartbeat_age() -> None:
    show = SHOW.format(pid=os.getpid())
    source = UnitsSource(["ark-agent@kyle.service", "ark-agent@joey.service"],
                         show=lambda units: show, monotonic=lambda: 100.0)
    s = exposition(source)
    assert s[("ark_unit_active", (("state", "active/running"),
                                  ("unit", "ark-agent@kyle.service")))] == 1
    assert s[("ark_unit_active", (("state", "failed/failed"),
                                  ("unit", "ark-agent@joey.service")))] == 0
    assert s[("ark_unit_restarts_total", (("unit", "ark-agent@joey.service"),))] == 5
    assert s[("ark_agent_heartbeat_age_seconds", (("agent", "kyle"),))] == pytest.approx(5.0)
    # A failed agent has no heartbeat age (it is down, which its own alert says).
    assert ("ark_agent_heartbeat_age_seconds", (("agent", "joey"),)) not in s
    assert s[("ark_unit_rss_bytes", (("unit", "ark-agent@kyle.service"),))] > 0
    assert s[("ark_unit_cpu_seconds_total", (("unit", "ark-agent@kyle.service"),))] > 0


def test_parse_show_splits_blocks_and_keeps_values_with_equals() -> None:
    blocks = parse_show("Id=a.service\nX=k=v\n\n\nId=b.service\n")
    assert blocks == [{"Id": "a.service", "X": "k=v"}, {"Id": "b.service"}]
    assert agent_of("ark-agent@hrm.service") == "hrm"
    assert agent_of("ark-api.service") is None


class Broken(Source):
    name = "broken"

    def metrics(self):
        raise RuntimeError("source down")


class Fine(Source):
    name = "fine"

    def metrics(self):
        from prometheus_client.core import GaugeMetricFamily
        g = GaugeMetricFamily("ark_fine", "a figure")
        g.add_metric([], 1.0)
        yield g


@pytest.mark.requirement("LOG_03")
def test_a_failing_source_is_reported_and_the_others_still_answer() -> None:
    s = exposition(Broken(), Fine())
    assert s[("ark_collector_up", (("collector", "broken"),))] == 0
    assert s[("ark_collector_up", (("collector", "fine"),))] == 1
    assert s[("ark_fine", ())] == 1


@pytest.mark.requirement("LOG_03")
@pytest.mark.parametrize("value", ["0.0.0.0:9101", "[::]:9101", ":9101", "10.0.0.1",
                                   "10.0.0.1:0", "10.0.0.1:70000", "10.0.0.1:http"])
def test_listen_refuses_wildcards_and_malformed_values(value: str) -> None:
    with pytest.raises(ListenError, match="--listen"):
        parse_listen(value)


@given(st.text(max_size=40))
def test_listen_never_crashes_on_any_text(value: str) -> None:
    try:
        host, port = parse_listen(value)
    except ListenError as exc:
        assert "--listen" in str(exc)
    else:
        assert host and 0 < port < 65536 and host not in ("0.0.0.0", "::")


def test_listen_accepts_the_hosts_address() -> None:
    assert parse_listen("10.213.0.2:9101") == ("10.213.0.2", 9101)
    assert parse_listen("[fd00::2]:9101") == ("fd00::2", 9101)


def test_last_heal_reads_the_newest_real_result(tmp_path: Path) -> None:
    log = tmp_path / "heal.log"
    assert last_heal(log) is None
    lines = [{"ts": "2026-01-01T00:00:00+00:00", "event": "heal_result", "safe": False},
             {"ts": "2026-01-02T00:00:00+00:00", "event": "heal", "status": "ok"},
             {"ts": "2026-01-03T00:00:00+00:00", "event": "heal_result", "safe": True},
             {"ts": "2026-01-04T00:00:00+00:00", "event": "heal_result", "safe": False,
              "dry_run": True}]
    log.write_text("\n".join(map(json.dumps, lines)) + "\nnot json\n")
    when, safe = last_heal(log)
    assert safe is True and when == pytest.approx(1767398400.0)


def test_error_labels_survive_unreadable_envelopes() -> None:
    env = {"envelope": json.dumps({"payload": {"agent": "joey", "severity": "critical"}})}
    assert error_labels(env) == ("joey", "critical")
    assert error_labels({"envelope": "{"}) == ("unknown", "unknown")
    assert error_labels({}) == ("unknown", "unknown")


def test_tree_bytes_counts_files_and_ignores_symlinks(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x" * 10000)
    (tmp_path / "link").symlink_to("/usr")
    assert 10000 <= tree_bytes(tmp_path) < 10000 + 16384
    assert tree_bytes(tmp_path / "missing") == 0


@pytest.mark.requirement("LOG_03")
def test_an_unreadable_store_leaves_the_panic_flag_reported(tmp_path: Path) -> None:
    from ark_runtime.metrics.state import StateSource, StoreSource

    env = {"ARK_STATE_DIR": str(tmp_path), "ARK_LOG_DIR": str(tmp_path / "log")}
    (tmp_path / "memory.db").write_bytes(b"not a database" * 100)
    (tmp_path / "PANIC").write_text("by test\n")
    s = exposition(StateSource(env), StoreSource(env))
    assert s[("ark_collector_up", (("collector", "store"),))] == 0
    assert s[("ark_collector_up", (("collector", "state"),))] == 1
    assert s[("ark_panic", ())] == 1
