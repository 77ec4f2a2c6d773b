"""Kyle's feed: Bar validation and the replay/synthetic adapters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from ark_runtime.market import (
    SAMPLE_BARS,
    Bar,
    BarError,
    FeedAdapter,
    ReplayAdapter,
    ReplayError,
    SyntheticAdapter,
    write_jsonl,
)

TS = datetime(2024, 1, 2, 15, 0, tzinfo=UTC)


def bar(**kw: object) -> Bar:
    fields: dict[str, object] = dict(
        symbol="AAPL", ts=TS, open=10, high=11, low=9, close=10.5, volume=1000
    )
    fields.update(kw)
    return Bar.model_validate(fields)


def test_valid_bar_and_utc_normalisation() -> None:
    b = bar(ts=datetime(2024, 1, 2, 17, 0, tzinfo=timezone(timedelta(hours=2))))
    assert b.ts == TS and b.ts.tzinfo == UTC
    assert bar(symbol="BRK.B").symbol == "BRK.B"


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"high": 10.2}, "high"),  # below close 10.5
        ({"low": 10.2}, "low"),  # above open 10
        ({"open": 0, "low": 0}, "price"),
        ({"close": -1}, "price"),
        ({"volume": -5}, "volume"),
        ({"symbol": "aapl; rm"}, "symbol"),
        ({"ts": datetime(2024, 1, 2)}, "timezone"),
        ({"close": float("nan")}, "finite"),
        ({"volume": True}, "boolean"),
        ({"open": True, "low": 1}, "boolean"),
    ],
)
def test_bad_bars_rejected(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(ValidationError, match=msg):
        bar(**kw)


def test_bar_is_frozen_and_rejects_extra_fields() -> None:
    with pytest.raises(ValidationError):
        bar(extra=1)
    b = bar()
    with pytest.raises(ValidationError):
        b.close = 99  # type: ignore[misc]


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


GOOD = {
    "symbol": "BTC-USD",
    "ts": "2024-01-02T15:00:00Z",
    "open": 100,
    "high": 101,
    "low": 99,
    "close": 100.5,
    "volume": 3,
}


def test_replay_jsonl(tmp_path: Path) -> None:
    second = dict(GOOD, ts="2024-01-02T15:01:00Z")
    bars = list(ReplayAdapter(_jsonl(tmp_path / "b.jsonl", [GOOD, "", second])))
    assert [b.ts.minute for b in bars] == [0, 1]
    assert isinstance(ReplayAdapter(tmp_path / "b.jsonl"), FeedAdapter)


def test_replay_raises_with_line_number_by_default(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "b.jsonl", [GOOD, dict(GOOD, high=1)])
    with pytest.raises(ReplayError, match=r"b\.jsonl:2: .*high"):
        list(ReplayAdapter(path))


def test_replay_collects_errors_and_keeps_good_rows(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "b.jsonl",
        [
            GOOD,
            "{not json",
            "[1,2]",
            dict(GOOD, symbol="x y"),
            dict(GOOD, ts="2024-01-02T15:05:00Z"),
        ],
    )
    errors: list[BarError] = []
    bars = list(ReplayAdapter(path, on_error=errors.append))
    assert len(bars) == 2
    assert [e.line for e in errors] == [2, 3, 4]
    assert "invalid JSON" in errors[0].message
    assert "not a JSON object" in errors[1].message
    assert "symbol" in errors[2].message


def test_replay_csv(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text(
        "symbol,ts,open,high,low,close,volume\n"
        "BRK.B,2024-01-02T15:00:00+00:00,400,401,399,400.5,1200\n"
        "BRK.B,2024-01-02T15:01:00+00:00,400,abc,399,400.5,1200\n"
        "BRK.B,2024-01-02T15:02:00+00:00,400,401\n"
    )
    errors: list[BarError] = []
    bars = list(ReplayAdapter(path, on_error=errors.append))
    assert [b.symbol for b in bars] == ["BRK.B"]
    assert [e.line for e in errors] == [3, 4]
    assert "high" in errors[0].message
    assert "columns" in errors[1].message


def test_replay_csv_missing_header(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("symbol,ts,open\nAAPL,2024-01-02T15:00:00Z,1\n")
    with pytest.raises(ReplayError, match="lacks high, low, close, volume"):
        list(ReplayAdapter(path))


def test_replay_unsupported_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        ReplayAdapter(tmp_path / "bars.xml")


def test_synthetic_is_deterministic_and_interleaved() -> None:
    a = list(SyntheticAdapter(["AAPL", "BTC-USD"], seed=7, bars=50))
    b = list(SyntheticAdapter(["AAPL", "BTC-USD"], seed=7, bars=50))
    c = list(SyntheticAdapter(["AAPL", "BTC-USD"], seed=8, bars=50))
    assert a == b
    assert a != c
    assert len(a) == 100
    assert [x.symbol for x in a[:4]] == ["AAPL", "BTC-USD", "AAPL", "BTC-USD"]
    aapl = [x for x in a if x.symbol == "AAPL"]
    assert all(p.ts < q.ts for p, q in zip(aapl, aapl[1:], strict=False))


def test_synthetic_symbol_independent_of_others() -> None:
    alone = [x for x in SyntheticAdapter(["AAPL"], seed=3, bars=20)]
    # AAPL keeps its position 0, so its stream is unchanged by adding a symbol after it.
    mixed = [
        x for x in SyntheticAdapter(["AAPL", "ETH-USDT"], seed=3, bars=20) if x.symbol == "AAPL"
    ]
    assert alone == mixed


def test_synthetic_rejects_bad_symbol() -> None:
    with pytest.raises(ValueError, match="symbol"):
        SyntheticAdapter(["bad symbol"])


def test_write_jsonl_round_trips(tmp_path: Path) -> None:
    bars = list(SyntheticAdapter(["ETH-USDT"], seed=1, bars=30))
    assert write_jsonl(bars, tmp_path / "x.jsonl") == 30
    assert list(ReplayAdapter(tmp_path / "x.jsonl")) == bars


def test_sample_file_ships_and_parses_cleanly() -> None:
    errors: list[BarError] = []
    bars = list(ReplayAdapter(SAMPLE_BARS, on_error=errors.append))
    assert errors == []
    symbols = {b.symbol for b in bars}
    assert {"BRK.B", "BTC-USD"} <= symbols
    assert all(sum(b.symbol == s for b in bars) >= 150 for s in symbols)


def test_sample_file_is_reproducible(tmp_path: Path) -> None:
    from ark_runtime.market import write_sample

    write_sample(tmp_path / "s.jsonl")
    assert (tmp_path / "s.jsonl").read_bytes() == SAMPLE_BARS.read_bytes()
