"""CONSOLE log viewer: the cached tail (`logs.TailCache`) answers exactly as the uncached
read it replaced, through appends, half-written lines, rename rotation, copytruncate and
gzip generations, and stays within its memory budget."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ark_runtime.api import logs

AGENTS = ["kyle", "joey", "kenny"]


def _tail_offset(path: Path, lines: int) -> int:
    """The old read's tail offset (7b02a77's logs._tail_offset), verbatim."""
    size = path.stat().st_size
    start = max(size - min(logs.READ_LIMIT, 256 * lines), 0)
    with path.open("rb") as f:
        f.seek(start)
        chunk = f.read(size - start)
    cut = chunk.split(b"\n")
    keep = b"\n".join(cut[-(lines + 1):])  # the last item is the empty tail after "\n"
    return size - len(keep)


def oracle_read(agents: list[str], level: str | None, lines: int,
                cursor: dict[str, int] | None, directory: Path) -> dict[str, Any]:
    """`logs.read` as it was before the tail cache (commit 7b02a77), verbatim."""
    floor = logs.LEVELS.index(level) if level in logs.LEVELS else 0
    out: list[dict[str, Any]] = []
    new_cursor: dict[str, int] = {}
    for agent in agents:
        path = directory / f"{agent}.log"
        if not path.is_file():
            continue
        size = path.stat().st_size
        start = (cursor or {}).get(agent)
        if start is None or start > size:
            start = _tail_offset(path, lines)
        data = b""
        if size > start:
            with path.open("rb") as f:
                f.seek(start)
                data = f.read(min(size - start, logs.READ_LIMIT))
        complete = data[: data.rfind(b"\n") + 1]
        new_cursor[agent] = start + len(complete)
        for raw in complete.splitlines():
            if raw.strip():
                entry = logs._parse(raw, agent)
                lvl = str(entry.get("level", "info")).lower()
                if lvl not in logs.LEVELS or logs.LEVELS.index(lvl) >= floor:
                    out.append(entry)
    out.sort(key=lambda e: str(e.get("ts", "")))
    return {"lines": out[-lines:], "cursor": new_cursor}


def record(i: int, level: str, pad: int) -> bytes:
    return json.dumps({"ts": f"2026-12-08T00:00:{i % 60:02d}.{i:06d}Z", "level": level,
                       "msg": "m" * pad, "n": i}).encode() + b"\n"


line = st.one_of(
    st.builds(record, st.integers(0, 10**6), st.sampled_from([*logs.LEVELS, "LOUD"]),
              st.integers(0, 400)),
    st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"x")),  # garbage, maybe no "\n"
)
step = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(AGENTS), st.lists(line, max_size=30)),
    st.tuples(st.just("rename"), st.sampled_from(AGENTS), st.lists(line, max_size=5)),
    st.tuples(st.just("copytruncate"), st.sampled_from(AGENTS), st.lists(line, max_size=5)),
    st.tuples(st.just("gzip"), st.sampled_from(AGENTS), st.just([])),
    st.tuples(st.just("rewrite"), st.sampled_from(AGENTS), st.lists(line, max_size=5)),
)
query = st.tuples(st.lists(st.sampled_from(AGENTS), min_size=1, max_size=3, unique=True),
                  st.sampled_from([None, *logs.LEVELS]), st.sampled_from([1, 2, 5, 100, 500]))


def apply(d: Path, op: str, agent: str, data: list[bytes]) -> None:
    path = d / f"{agent}.log"
    blob = b"".join(data)
    if op == "append":
        with path.open("ab") as f:
            f.write(blob)
    elif op == "rename" and path.exists():  # logrotate's default: rename, new file
        os.replace(path, d / f"{agent}.log.1")
        path.write_bytes(blob)
    elif op == "copytruncate" and path.exists():
        (d / f"{agent}.log.1").write_bytes(path.read_bytes())
        with path.open("r+b") as f:
            f.truncate(0)
            f.write(blob)
    elif op == "gzip" and (d / f"{agent}.log.1").exists():
        old = d / f"{agent}.log.1"
        (d / f"{agent}.log.2.gz").write_bytes(gzip.compress(old.read_bytes()))
        old.unlink()
    elif op == "rewrite" and path.exists():  # same size, other bytes, in the same tick
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.write((blob * (size // max(1, len(blob)) + 1))[:size] if blob else b"x" * size)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(step, st.lists(query, min_size=1, max_size=3)), min_size=1,
                max_size=12))
def test_cached_tail_reads_as_before(steps) -> None:
    logs.TAILS.clear()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for (op, agent, data), queries in steps:
            apply(d, op, agent, data)
            for agents, level, lines in queries:
                expected = oracle_read(agents, level, lines, None, d)
                assert logs.read(agents, level, lines, None, d) == expected
                # a cursor past the end (the file was rotated) is a tail too
                past = {a: 10**9 for a in agents}
                assert logs.read(agents, level, lines, past, d) == expected
                # and a follow from the tail's cursor reads on as before
                cur = expected["cursor"]
                assert logs.read(agents, level, lines, cur, d) == \
                    oracle_read(agents, level, lines, cur, d)


def test_unchanged_tail_is_parsed_once_and_a_changed_one_again(tmp_path: Path) -> None:
    logs.TAILS.clear()
    path = tmp_path / "kyle.log"
    path.write_bytes(b"".join(record(i, "info", 10) for i in range(300)))
    first = logs.read(["kyle"], None, 100, None, tmp_path)
    parsed = logs.TAILS.parsed
    assert logs.read(["kyle"], None, 100, None, tmp_path) == first
    assert logs.TAILS.parsed == parsed  # a hit: nothing parsed
    with path.open("ab") as f:
        f.write(record(300, "error", 10))
    again = logs.read(["kyle"], None, 100, None, tmp_path)
    assert logs.TAILS.parsed == parsed + 1
    assert 300 in [e["n"] for e in again["lines"]]


def test_the_cache_holds_at_most_its_budget(tmp_path: Path) -> None:
    cache = logs.TailCache(budget_bytes=20_000)
    for i in range(20):
        path = tmp_path / f"a{i}.log"
        path.write_bytes(b"".join(record(k, "info", 50) for k in range(100)))
        cursor, entries = cache.get(path, "kyle", 100)
        assert len(entries) == 100 and cursor == path.stat().st_size
        assert cache.held <= 20_000
    assert 0 < len(cache._tails) < 20
    big = tmp_path / "big.log"
    big.write_bytes(b"".join(record(k, "info", 300) for k in range(100)))
    assert len(cache.get(big, "kyle", 100)[1]) > 0  # answered, if too big to keep
    assert cache.held <= 20_000
