"""Issue #12: routing bars to Joey shards by symbol (bus/shards.py, Kyle's commit)."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ark_runtime.agents.kyle import Kyle
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.shards import (
    MAX_SHARDS,
    parse_instance,
    shard_name,
    shard_names,
    shard_of,
)
from ark_runtime.bus.streams import BusSettings, inbox
from ark_runtime.market import SyntheticAdapter
from ark_runtime.validators import validate_symbol

REPO = Path(__file__).resolve().parents[2]
# The ticker grammar of validators.validate_symbol.
SYMBOLS = st.from_regex(r"[A-Z][A-Z0-9]{0,9}([.\-][A-Z0-9]{1,10})?", fullmatch=True)


def test_one_shard_is_the_unsharded_joey() -> None:
    assert shard_names(1) == ["joey"]
    assert inbox(shard_name(0)) == "ark:stream:joey"
    assert shard_names(3) == ["joey", "joey-1", "joey-2"]
    assert parse_instance("joey-2") == ("joey", 2)
    assert parse_instance("joey") == ("joey", 0)
    # Not shard names: passed on unchanged, for the agent-name check to refuse.
    for name in ("joey-0", "joey-01", "kenny-1", "joey-", "joey-x"):
        assert parse_instance(name) == (name, 0)


def test_routing_is_pinned_to_crc32() -> None:
    # Literal values: a switch to Python's hash() (salted per process) or any other function
    # would send a symbol's bars to another shard after a restart and break its order.
    assert [shard_of(s, 2) for s in ("AAPL", "MSFT", "BTC-USD", "ETH-USD")] == [0, 1, 0, 1]
    assert [shard_of(s, 3) for s in ("AAPL", "MSFT", "BTC-USD", "ETH-USD")] == [0, 1, 2, 0]


def test_routing_is_the_same_in_another_process_with_another_hash_seed() -> None:
    symbols = [f"S{i}" for i in range(200)]
    code = ("import json,sys; from ark_runtime.bus.shards import shard_of; "
            "print(json.dumps([shard_of(s, 5) for s in json.loads(sys.argv[1])]))")
    seen = set()
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, json.dumps(symbols)], cwd=REPO,
                             env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)},
                             capture_output=True, text=True, check=True).stdout
        seen.add(out)
    assert seen == {json.dumps([shard_of(s, 5) for s in symbols]) + "\n"}


@settings(max_examples=300)
@given(symbol=SYMBOLS, shards=st.integers(1, MAX_SHARDS))
def test_every_symbol_has_one_shard_in_range(symbol: str, shards: int) -> None:
    validate_symbol(symbol)  # the generator makes real tickers
    k = shard_of(symbol, shards)
    assert 0 <= k < shards
    assert k == shard_of(symbol, shards) == zlib.crc32(symbol.encode()) % shards
    assert shard_of(symbol, 1) == 0


@pytest.mark.parametrize("shards", [2, 3, 4, 8])
def test_many_symbols_spread_evenly_over_every_shard(shards: int) -> None:
    # 2,000 ticker-like names (AAA .. , with suffixes): the shares a shard count buys.
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    symbols = [f"{a}{b}{c}" for a in letters[:8] for b in letters for c in letters[:8]]
    symbols += [f"{s}-USD" for s in symbols[:336]]
    counts = Counter(shard_of(s, shards) for s in symbols)
    assert set(counts) == set(range(shards))
    # crc32 is linear, so structured names are not perfectly uniform: within 25 %.
    assert max(counts.values()) < 1.25 * len(symbols) / shards, counts


@pytest.mark.parametrize("bad", [0, -1, MAX_SHARDS + 1])
def test_a_bad_shard_count_is_refused_by_name(bad: int) -> None:
    with pytest.raises(ValueError, match="shard count must be 1..64"):
        shard_of("AAPL", bad)
    with pytest.raises(ValueError, match="shard index"):
        shard_name(MAX_SHARDS)


class RecordingPipe:
    """Just enough of a redis-py pipeline for Kyle._commit: records each XADD's stream."""

    def __init__(self, log: list[tuple[str, dict[str, str]]]) -> None:
        self.log = log
        self.results: list[object] = []

    def __enter__(self) -> RecordingPipe:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def xadd(self, stream: str, fields: dict[str, str], **_kw: object) -> None:
        self.log.append((stream, fields))
        self.results.append("1-0")

    def set(self, *_a: object) -> None:
        self.results.append(True)

    def xlen(self, _stream: str) -> None:
        self.results.append(0)

    def execute(self) -> list[object]:
        return self.results


def kyle_with(shards: int, log: list) -> Kyle:
    kyle = Kyle.__new__(Kyle)
    kyle.r = type("R", (), {"pipeline": lambda self, transaction=True: RecordingPipe(log)})()
    kyle.settings, kyle.shards = BusSettings(), shards
    kyle.targets = [inbox(n) for n in shard_names(shards)]
    kyle.target, kyle.cursor_key, kyle.position, kyle.emitted = kyle.targets[0], "c", 0, 0
    kyle.side_readers = []  # the executor's copies are tested in test_kyle_side_readers
    kyle.log = __import__("logging").getLogger("test.kyle")
    return kyle


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_kyle_sends_each_symbol_to_one_shard_in_feed_order(shards: int) -> None:
    log: list[tuple[str, dict[str, str]]] = []
    kyle = kyle_with(shards, log)
    feed = list(SyntheticAdapter(["AAPL", "MSFT", "BTC-USD", "ETH-USD", "NVDA"], bars=40))
    for start in range(0, len(feed), 64):  # Kyle's batches
        kyle._commit([Envelope.new("market.bar", bar, from_agent="kyle", to_agent="joey")
                      for bar in feed[start:start + 64]], [])
    streams: dict[str, set[str]] = defaultdict(set)
    order: dict[str, list[str]] = defaultdict(list)
    for stream, fields in log:
        payload = json.loads(fields["envelope"])["payload"]
        streams[payload["symbol"]].add(stream)
        order[payload["symbol"]].append(payload["ts"])
    for symbol, used in streams.items():
        assert used == {inbox(shard_name(shard_of(symbol, shards)))}
        assert order[symbol] == [b.ts.isoformat().replace("+00:00", "Z") for b in feed
                                 if b.symbol == symbol] or order[symbol] == \
            [b.ts.isoformat() for b in feed if b.symbol == symbol]
    assert sum(len(v) for v in order.values()) == len(feed)
