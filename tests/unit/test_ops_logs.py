"""LOG_02: `invoke logs` — filters, time-ordered merge, and --follow's remote side.

--follow is exercised with the exact remote command it sends over SSH, run locally by sh
(the only stand-in is the SSH hop itself): real tail -F, real files, real process cleanup.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ark_ops.fleet.logs import (
    Filters,
    Printer,
    Record,
    Reorder,
    UsageError,
    follow,
    merged,
    parse_record,
    parse_since,
)
from ark_ops.fleet.ssh import FleetHost

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def line(ts: datetime, agent: str = "joey", level: str = "info", msg: str = "m", **kw) -> str:
    return json.dumps({"ts": ts.isoformat(), "agent": agent, "level": level, "msg": msg,
                       "correlation_id": kw.pop("cid", None), **kw})


def rec(host: str, ts: datetime, **kw) -> Record:
    r = parse_record(host, line(ts, **kw))
    assert r is not None
    return r


def test_parse_since_accepts_durations_and_iso_times() -> None:
    assert parse_since("10m", NOW) == NOW - timedelta(minutes=10)
    assert parse_since("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_since("1d", NOW) == NOW - timedelta(days=1)
    assert parse_since("2026-11-26T11:00", NOW) == datetime(2026, 11, 26, 11, tzinfo=UTC)
    assert parse_since("2026-11-26T11:00+01:00", NOW).utcoffset() == timedelta(hours=1)


@given(st.text(max_size=30))
def test_parse_since_refuses_anything_else_with_the_option_named(value: str) -> None:
    try:
        parse_since(value, NOW)
    except UsageError as exc:
        assert "--since" in str(exc) and exc.exit_code == 64


@pytest.mark.parametrize("kwargs,option", [({"agent": "../etc"}, "--agent"),
                                           ({"level": "loud"}, "--level"),
                                           ({"grep": "("}, "--grep"),
                                           ({"since": "soon"}, "--since")])
def test_bad_filter_values_name_their_option(kwargs: dict, option: str) -> None:
    with pytest.raises(UsageError, match=option):
        Filters.parse(**kwargs)


@pytest.mark.requirement("LOG_02")
def test_filters_by_agent_level_pattern_and_time() -> None:
    f = Filters.parse(agent="joey", level="warning", grep="dead-letter", since="10m", now=NOW)
    keep = rec("h", NOW - timedelta(minutes=1), level="warning", msg="dead-lettered x")
    assert f.keep(keep)
    assert not f.keep(rec("h", NOW - timedelta(minutes=1), agent="kyle", level="error",
                          msg="dead-lettered"))
    assert not f.keep(rec("h", NOW - timedelta(minutes=1), level="info", msg="dead-lettered"))
    assert not f.keep(rec("h", NOW - timedelta(minutes=1), level="error", msg="other"))
    assert not f.keep(rec("h", NOW - timedelta(minutes=20), level="error", msg="dead-letter"))


def test_non_json_and_partial_lines_are_skipped() -> None:
    assert parse_record("h", "not json") is None
    assert parse_record("h", '{"ts": "yesterday"}') is None
    assert parse_record("h", '{"msg": "no ts"}') is None
    heal = parse_record("h", json.dumps({"ts": NOW.isoformat(), "event": "heal_result"}))
    assert heal is not None and heal.agent == "heal"


@pytest.mark.requirement("LOG_02")
def test_hosts_are_merged_in_timestamp_order() -> None:
    a = [rec("a", NOW + timedelta(seconds=s)) for s in (0, 2, 4)]
    b = [rec("b", NOW + timedelta(seconds=s)) for s in (1, 3, 5)]
    assert [r.host for r in merged([a, b])] == ["a", "b", "a", "b", "a", "b"]


def test_printer_prefixes_host_and_agent_and_passes_raw_json() -> None:
    out = io.StringIO()
    r = rec("ark-lab-1", NOW, agent="kenny", level="error", msg="boom", cid="c-1")
    Printer(out, raw_json=False, color=False).print(r)
    assert out.getvalue().split()[1:5] == ["ark-lab-1", "kenny", "error", "boom"]
    assert "[c-1]" in out.getvalue()
    colored = io.StringIO()
    Printer(colored, raw_json=False, color=True).print(r)
    assert "\033[" in colored.getvalue()
    raw = io.StringIO()
    Printer(raw, raw_json=True).print(r)
    assert json.loads(raw.getvalue()) == r.raw


def test_reorder_window_releases_in_time_order_and_never_drops() -> None:
    ro = Reorder(window=1.0)
    ro.push(rec("b", NOW + timedelta(seconds=2)), arrived=10.0)
    ro.push(rec("a", NOW + timedelta(seconds=1)), arrived=10.5)  # older, arrived later
    assert ro.release(10.9) == []
    out = ro.release(11.0)
    assert [r.host for r in out] == ["a", "b"]  # a is older in time: released with b
    ro.push(rec("c", NOW), arrived=12.0)  # late: still comes out
    assert [r.host for r in ro.release(13.5)] == ["c"]


def local(argv: list[str], **kw) -> subprocess.Popen:
    """Run the command `follow` would send over SSH here, with sh (the SSH hop removed)."""
    return subprocess.Popen(["sh", "-c", argv[-1]], **kw)


def tails_of(path: Path) -> list[str]:
    proc = subprocess.run(["pgrep", "-f", f"tail -q -n 0 -s 0.1 -F -- {path}"], capture_output=True,
                          text=True)
    return proc.stdout.split()


@pytest.mark.requirement("LOG_02")
def test_follow_merges_live_hosts_reports_a_dropout_once_and_leaves_no_tail(
        tmp_path: Path) -> None:
    for h in ("a", "b"):
        (tmp_path / h).mkdir()
        (tmp_path / h / "joey.log").write_text("")
    hosts = [FleetHost("a", "10.0.0.1"), FleetHost("b", "10.0.0.2"), FleetHost("dead", "x")]

    def popen(argv: list[str], **kw) -> subprocess.Popen:
        host = argv[-2].split("@")[1]
        if host == "x":  # an unreachable host: ssh exits 255
            return subprocess.Popen(["sh", "-c", "echo 'ssh: connect: No route' >&2; exit 255"],
                                    **kw)
        name = {"10.0.0.1": "a", "10.0.0.2": "b"}[host]
        return local([argv[-1].replace(str(tmp_path / "LOGDIR"), str(tmp_path / name))], **kw)

    out, stop = io.StringIO(), threading.Event()
    printer = Printer(out, raw_json=False, color=False)
    notes: list[str] = []
    printer.note = notes.append  # type: ignore[method-assign]
    result: dict[str, int] = {}
    t = threading.Thread(target=lambda: result.update(dropped=follow(
        hosts, Filters(), printer, window=0.2, stop=stop, popen=popen,
        log_dir=str(tmp_path / "LOGDIR"))))
    t.start()
    time.sleep(1.0)  # tails started
    base = datetime.now(UTC)
    for i in range(6):  # alternate hosts, each line newer than the last
        with (tmp_path / "ab"[i % 2] / "joey.log").open("a") as fh:
            fh.write(line(base + timedelta(milliseconds=10 * i), msg=f"n{i}") + "\n")
    deadline = time.monotonic() + 10
    while out.getvalue().count("\n") < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tails_of(tmp_path / "a"), "the remote tail should be running while we follow"
    stop.set()
    t.join(15)
    assert not t.is_alive()
    msgs = [ln.split()[4] for ln in out.getvalue().splitlines()]
    assert msgs == [f"n{i}" for i in range(6)]
    assert [ln.split()[1] for ln in out.getvalue().splitlines()] == ["a", "b"] * 3
    assert result["dropped"] == 1
    assert len(notes) == 1 and "dead dropped out" in notes[0] and "No route" in notes[0]
    time.sleep(0.3)
    assert tails_of(tmp_path / "a") == [] and tails_of(tmp_path / "b") == []


@pytest.mark.requirement("LOG_02")
def test_a_since_window_reads_rotated_and_compressed_generations_too(tmp_path: Path) -> None:
    import gzip

    from ark_ops.fleet.logs import read_host

    old, new = NOW - timedelta(hours=3), NOW - timedelta(minutes=1)
    with gzip.open(tmp_path / "joey.log.2.gz", "wt") as fh:
        fh.write(line(old, msg="ancient") + "\n" + line(NOW - timedelta(minutes=50),
                                                       msg="rotated") + "\n")
    (tmp_path / "joey.log").write_text(line(new, msg="current") + "\n")

    def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", "-c", argv[-1].replace("/var/log/ark", str(tmp_path))],
                              **kw)

    host = FleetHost("h", "10.0.0.1")
    assert [r.msg for r in read_host(host, Filters(), run)] == ["current"]
    since = Filters.parse(since="2h", now=NOW)
    assert [r.msg for r in read_host(host, since, run)] == ["rotated", "current"]
