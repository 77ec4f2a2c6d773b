"""AGENT_03: the API's incremental trace index (TraceIndex) answers exactly as the full scan
(`collect`) on the same files, across appends, rotations, truncations and half-written lines."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ark_runtime.trace import TraceIndex, collect

IDS = [f"{n}{n}{n}{n}{n}{n}{n}{n}-{n}{n}{n}{n}-4{n}{n}{n}-8{n}{n}{n}-{n * 12}" for n in "1234"]
CID = IDS[0]
MIDS = IDS[2:] + [f"{n * 8}-{n * 4}-4{n * 3}-8{n * 3}-{n * 12}" for n in "56"]  # never correlations


def record(draw_id, ts: str) -> dict:
    return {"ts": ts, "agent": "kyle", "host": "a", "event": "emitted", "msg": "m",
            "correlation_id": draw_id}


ident = st.sampled_from(IDS[:2] + [None, 7, ""])
message = st.sampled_from(MIDS + [None, 7, CID])
ts = st.sampled_from(["2024-01-01T00:00:00.1+00:00", "2024-01-01T00:00:00.3Z",
                      "2024-01-01T00:00:00.2", "not a time", ""])
plain = st.builds(lambda c, m, e, t: {"ts": t, "agent": "kyle", "host": "a", "event": "x",
                                      "msg": "m", "correlation_id": c, "message_id": m,
                                      "emitted_id": e}, ident, message, message, ts)
batch = st.builds(lambda hops, t: {"ts": t, "agent": "kenny", "event": "batch",
                                   "correlation_id": None, "hops": hops},
                  st.lists(st.one_of(plain, st.just("not a dict")), max_size=3), ts)
line = st.one_of(
    st.builds(lambda r: json.dumps(r) + "\n", st.one_of(plain, batch)),
    st.builds(lambda r: json.dumps(r) + "\r\n", plain),
    st.just('{"correlation_id": "broken\n'),  # malformed: skipped by both
    st.just('["correlation_id"]\n'),  # JSON, not an object: skipped by both
    st.just("no id here\n"),
    st.just(b'{"correlation_id": "\xff\xfe", "message_id": "x"}\n'.decode("latin-1")),
)
# one step on a directory: append lines (the last maybe without its newline), rotate by
# rename, copytruncate, gzip a generation, delete a file
step = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(["kyle.log", "kenny.log"]),
              st.lists(line, max_size=4), st.integers(0, 40)),
    st.tuples(st.just("rename"), st.sampled_from(["kyle.log", "kenny.log"])),
    st.tuples(st.just("copytruncate"), st.sampled_from(["kyle.log", "kenny.log"])),
    st.tuples(st.just("gzip"), st.sampled_from(["kyle.log", "kenny.log"])),
    st.tuples(st.just("delete"), st.sampled_from(["kyle.log.1", "kenny.log.2.gz"])),
)


def apply(d: Path, action: tuple) -> None:
    kind, name = action[0], action[1]
    path = d / name
    if kind == "append":
        text = "".join(action[2]).encode("latin-1", errors="replace")
        cut = len(text) - action[3] if action[3] < len(text) else len(text)
        with open(path, "ab") as fh:  # a writer that has not finished its last line yet
            fh.write(text[:cut])
    elif kind == "rename" and path.exists():
        os.replace(path, d / f"{name}.1")
    elif kind == "copytruncate" and path.exists():
        (d / f"{name}.1").write_bytes(path.read_bytes())
        with open(path, "r+b") as fh:
            fh.truncate(0)
    elif kind == "gzip" and (d / f"{name}.1").exists():
        with gzip.open(d / f"{name}.2.gz", "wb") as fh:
            fh.write((d / f"{name}.1").read_bytes())
        (d / f"{name}.1").unlink()
    elif kind == "delete" and path.exists():
        path.unlink()


@pytest.mark.requirement("AGENT_03")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=12), st.sampled_from(IDS + MIDS))
def test_index_equals_the_full_scan_after_every_step(steps, asked) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        index = TraceIndex()
        for action in steps:
            apply(d, action)
            for who in (asked, CID):
                assert index.collect(who, [d]) == collect(who, [d])


@pytest.mark.requirement("AGENT_03")
def test_half_written_line_is_not_indexed_half(tmp_path) -> None:
    full = json.dumps(record(CID, "2024-01-01T00:00:00.1+00:00") | {"msg": "whole"}) + "\n"
    log = tmp_path / "kyle.log"
    log.write_text(full[:30])
    index = TraceIndex()
    assert index.collect(CID, [tmp_path]) == collect(CID, [tmp_path]) == (None, [])
    with open(log, "a") as fh:
        fh.write(full[30:])
    correlation, hops = index.collect(CID, [tmp_path])
    assert (correlation, [h.detail for h in hops]) == (CID, ["whole"])
    assert (correlation, hops) == collect(CID, [tmp_path])


@pytest.mark.requirement("AGENT_03")
def test_truncated_then_regrown_file_is_read_again(tmp_path) -> None:
    # copytruncate, then the agent writes more than was there before the next request
    log = tmp_path / "kyle.log"
    log.write_text(json.dumps(record(CID, "2024-01-01T00:00:00.1+00:00")) + "\n")
    index = TraceIndex()
    assert len(index.collect(CID, [tmp_path])[1]) == 1
    with open(log, "r+") as fh:
        fh.truncate(0)
        fh.write(json.dumps(record(IDS[1], "2024-01-01T00:00:00.2+00:00") | {"msg": "x" * 99})
                 + "\n")
    assert index.collect(CID, [tmp_path]) == collect(CID, [tmp_path]) == (None, [])
    assert index.collect(IDS[1], [tmp_path]) == collect(IDS[1], [tmp_path])


@pytest.mark.requirement("AGENT_03")
def test_unreadable_file_is_skipped_as_the_full_scan_does(tmp_path, capsys) -> None:
    (tmp_path / "kyle.log").write_text(json.dumps(record(CID, "t")) + "\n")
    (tmp_path / "joey.log.1.gz").write_bytes(b"not gzip")
    index = TraceIndex()
    assert index.collect(CID, [tmp_path]) == collect(CID, [tmp_path])
    err = capsys.readouterr().err
    assert err.count("ark trace: skipping") == 2 and "joey.log.1.gz" in err


@pytest.mark.requirement("AGENT_03")
def test_a_message_id_resolves_to_its_first_records_correlation(tmp_path) -> None:
    mid = MIDS[-1]
    rows = [record(IDS[1], "t1") | {"message_id": mid}, record(IDS[2], "t2") | {"emitted_id": mid},
            record(7, "t3") | {"message_id": MIDS[0]}]
    (tmp_path / "a.log").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "b.log").write_text(json.dumps(record(IDS[3], "t0") | {"message_id": mid}))
    index = TraceIndex()
    for asked in (mid, MIDS[0], IDS[2]):  # MIDS[0]: a non-string correlation, as collect
        assert index.collect(asked, [tmp_path]) == collect(asked, [tmp_path])
    assert index.collect(mid, [tmp_path])[0] == IDS[1]


@pytest.mark.requirement("AGENT_03")
def test_concurrent_lookups_while_the_log_grows(tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    log = tmp_path / "kyle.log"
    log.write_text("")
    index = TraceIndex()

    def ask(_: int) -> None:
        for _ in range(30):
            correlation, hops = index.collect(CID, [tmp_path])
            assert correlation in (None, CID)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(ask, n) for n in range(4)]
        for n in range(200):
            with open(log, "a") as fh:
                fh.write(json.dumps(record(CID, f"2024-01-01T00:00:{n % 60:02d}+00:00")) + "\n")
        for f in futures:
            f.result()
    assert index.collect(CID, [tmp_path]) == collect(CID, [tmp_path])
    assert len(index.collect(CID, [tmp_path])[1]) == 200


@pytest.mark.requirement("AGENT_03")
def test_logs_past_the_budget_are_scanned_and_nothing_is_held(tmp_path) -> None:
    """Logs larger than the budget answer as the full scan does, and the index keeps no
    file: memory stays bounded however much logrotate keeps."""
    log = tmp_path / "kyle.log"
    log.write_text("".join(json.dumps(record(CID, "2024-01-01T00:00:00.1+00:00")
                                      | {"msg": f"m{n}"}) + "\n" for n in range(20)))
    index = TraceIndex(budget_bytes=log.stat().st_size + 9)
    assert index.collect(CID, [tmp_path]) == collect(CID, [tmp_path])
    assert index._files  # within the budget: indexed
    with gzip.open(tmp_path / "kyle.log.1.gz", "wt") as fh:  # counts 10x its size
        fh.write(log.read_text())
    assert index.collect(CID, [tmp_path]) == collect(CID, [tmp_path])
    assert index._files == {}
