"""Market data for Kyle: the validated `Bar` and the feed adapters that produce bars.

An adapter is anything iterable that yields `Bar`s (`FeedAdapter`), so a live source can be
added later without touching Kyle. Two ship today: `ReplayAdapter` (JSONL/CSV files) and
`SyntheticAdapter` (a seeded random walk for demos and benchmarks).
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ark_runtime.validators import Symbol, UtcTime, validate_symbol

__all__ = [
    "SAMPLE_BARS",
    "Bar",
    "BarError",
    "FeedAdapter",
    "ReplayAdapter",
    "SyntheticAdapter",
    "session_of",
    "write_jsonl",
]

SAMPLE_BARS = Path(__file__).parent / "data" / "sample_bars.jsonl"


def session_of(ts: datetime, tz: str = "UTC", reset: time = time(0, 0)) -> str:
    """The trading session (an ISO date) `ts` belongs to: its local date in `tz`, shifted so
    that a session starts at `reset` local time. HRM's daily values and the executor's
    session-end close both use it, on market time (the bars' clock), not the wall clock."""
    local = ts.astimezone(ZoneInfo(tz))
    return (local - timedelta(hours=reset.hour, minutes=reset.minute)).date().isoformat()


class Bar(BaseModel):
    """One OHLCV bar. Frozen: once validated, nothing downstream can make it inconsistent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: Symbol
    ts: UtcTime
    open: float
    high: float
    low: float
    close: float
    volume: float



    @field_validator("open", "high", "low", "close", "volume", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        # pydantic would read true as 1.0; in a price feed that is a data error.
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        return value

    @field_validator("open", "high", "low", "close")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError("price must be a finite number > 0")
        return value

    @field_validator("volume")
    @classmethod
    def _volume(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError("volume must be a finite number >= 0")
        return value

    @model_validator(mode="after")
    def _ohlc_consistent(self) -> Bar:
        if self.high < max(self.open, self.close, self.low):
            raise ValueError(f"high {self.high} is below open/close/low")
        if self.low > min(self.open, self.close):
            raise ValueError(f"low {self.low} is above open/close")
        return self


@runtime_checkable
class FeedAdapter(Protocol):
    """The one thing Kyle needs from a data source."""

    def __iter__(self) -> Iterator[Bar]: ...


@dataclass(frozen=True)
class BarError:
    """A row that could not become a Bar; kept so bad data is reported, never dropped."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


class ReplayError(ValueError):
    def __init__(self, error: BarError) -> None:
        super().__init__(str(error))
        self.error = error


_FIELDS = ("symbol", "ts", "open", "high", "low", "close", "volume")


class ReplayAdapter:
    """Replays bars from a `.jsonl` or `.csv` file (CSV needs a header naming the fields).

    Bad rows: by default the first one raises `ReplayError` with the line number. Pass
    `on_error` (a callback, e.g. `errors.append`) to collect them and keep going instead.
    """

    def __init__(self, path: str | Path, on_error: Callable[[BarError], None] | None = None):
        self.path = Path(path)
        self.on_error = on_error
        suffix = self.path.suffix.lower()
        if suffix not in {".jsonl", ".csv"}:
            raise ValueError(f"{self.path}: unsupported feed format {suffix!r} (.jsonl or .csv)")
        self._format = suffix

    def __iter__(self) -> Iterator[Bar]:
        rows = self._jsonl_rows() if self._format == ".jsonl" else self._csv_rows()
        for line, row in rows:
            if isinstance(row, BarError):
                self._report(row)
                continue
            try:
                yield Bar.model_validate(row)
            except ValueError as exc:  # pydantic.ValidationError is a ValueError
                self._report(BarError(str(self.path), line, _brief(exc)))

    def _report(self, error: BarError) -> None:
        if self.on_error is None:
            raise ReplayError(error)
        self.on_error(error)

    def _jsonl_rows(self) -> Iterator[tuple[int, dict[str, Any] | BarError]]:
        # Bytes, decoded line by line: one line that is not UTF-8 is one bad row, not the
        # end of the feed.
        with self.path.open("rb") as fh:
            for line, raw in enumerate(fh, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield line, BarError(str(self.path), line,
                                         f"line is not UTF-8 text (byte {exc.start})")
                    continue
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield line, BarError(str(self.path), line, f"invalid JSON: {exc.msg}")
                    continue
                if not isinstance(row, dict):
                    yield line, BarError(str(self.path), line, "row is not a JSON object")
                    continue
                yield line, row

    def _csv_rows(self) -> Iterator[tuple[int, dict[str, Any] | BarError]]:
        # Bytes that are not UTF-8 become U+FFFD, which no field's validator accepts, so the
        # row is reported naming that field; a cell over the csv module's size limit is one
        # bad row too (the reader resumes at the next line).
        with self.path.open(encoding="utf-8", errors="replace", newline="") as fh:
            reader = csv.DictReader(fh)
            try:
                fieldnames = reader.fieldnames or []
            except csv.Error as exc:
                yield 1, BarError(str(self.path), 1, f"malformed CSV header: {exc}")
                return
            missing = [f for f in _FIELDS if f not in fieldnames]
            if missing:
                yield 1, BarError(str(self.path), 1, f"CSV header lacks {', '.join(missing)}")
                return
            last = reader.line_num
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:  # line_num is not advanced past the bad row
                    last += 1
                    yield last, BarError(str(self.path), last, f"malformed CSV row: {exc}")
                    continue
                line = last = reader.line_num
                if None in row or any(v is None for v in row.values()):
                    yield line, BarError(str(self.path), line, "wrong number of columns")
                    continue
                yield line, row


def _brief(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'bar'}: {e['msg']}" for e in errors()
        )
    return str(exc)


class SyntheticAdapter:
    """A seeded, deterministic random walk per symbol, interleaved by timestamp.

    The walk alternates calm drifting regimes with short trending bursts on heavy volume,
    so breakouts and moving-average crosses actually occur. Same arguments, same bars.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        seed: int = 0,
        bars: int = 200,
        start: datetime | None = None,
        interval: timedelta = timedelta(minutes=1),
        prices: dict[str, float] | None = None,
        volumes: dict[str, float] | None = None,
    ) -> None:
        self.symbols = [validate_symbol(s) for s in symbols]
        if bars < 0:
            raise ValueError("bars must be >= 0")
        self.seed = seed
        self.bars = bars
        self.start = (start or datetime(2024, 1, 2, 14, 30, tzinfo=UTC)).astimezone(UTC)
        self.interval = interval
        self.prices = prices or {}
        self.volumes = volumes or {}

    def __iter__(self) -> Iterator[Bar]:
        walks = [self._walk(i, s) for i, s in enumerate(self.symbols)]
        for _ in range(self.bars):
            for walk in walks:
                yield next(walk)

    def _walk(self, index: int, symbol: str) -> Iterator[Bar]:
        # One RNG per symbol (seeded from seed and position) so adding a symbol does not
        # change the others' bars.
        rng = random.Random(f"{self.seed}:{index}:{symbol}")
        price = self.prices.get(symbol, rng.uniform(20, 400))
        base_volume = self.volumes.get(symbol, rng.uniform(2e5, 2e6))
        trend, burst_left = 0.0, 0
        for i in range(self.bars):
            if burst_left == 0 and rng.random() < 0.03:
                burst_left = rng.randint(4, 10)
                trend = rng.choice((1, -1)) * rng.uniform(0.004, 0.012)
            drift = trend if burst_left else rng.gauss(0, 0.0005)
            ret = drift + rng.gauss(0, 0.004)
            open_ = price
            close = max(0.01, price * (1 + ret))
            spread = abs(rng.gauss(0, 0.003))
            high = max(open_, close) * (1 + spread)
            low = max(0.005, min(open_, close) * (1 - abs(rng.gauss(0, 0.003))))
            volume = base_volume * rng.lognormvariate(0, 0.25) * (2.5 if burst_left else 1.0)
            if burst_left:
                burst_left -= 1
            price = close
            yield Bar(
                symbol=symbol,
                ts=self.start + i * self.interval,
                open=round(open_, 4),
                high=round(high, 4),
                low=round(low, 4),
                close=round(close, 4),
                volume=round(volume),
            )


def bar_to_json(bar: Bar) -> str:
    return json.dumps(bar.model_dump(mode="json"), sort_keys=True)


def write_jsonl(bars: Iterator[Bar] | Sequence[Bar], path: str | Path) -> int:
    """Write bars as JSONL (the ReplayAdapter format). Returns the number written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for bar in bars:
            fh.write(bar_to_json(bar) + "\n")
            count += 1
    return count


# The shipped sample is generated, not hand-edited: `write_sample(path)` reproduces it exactly
# (a unit test checks that). Prices are roughly realistic; BTC-USD trades in coins, so its
# average bar volume is far below the 100k floor of rule ETH-004 and its plans are rejected.
SAMPLE_SPEC: dict[str, Any] = {
    "symbols": ["AAPL", "BRK.B", "BTC-USD", "ETH-USDT"],
    "seed": 1,
    "bars": 200,
    "prices": {"AAPL": 185.0, "BRK.B": 410.0, "BTC-USD": 43000.0, "ETH-USDT": 2300.0},
    "volumes": {"AAPL": 900_000.0, "BRK.B": 350_000.0, "BTC-USD": 60_000.0, "ETH-USDT": 400_000.0},
}


def sample_adapter() -> SyntheticAdapter:
    return SyntheticAdapter(**SAMPLE_SPEC)


def write_sample(path: str | Path = SAMPLE_BARS) -> int:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_jsonl(sample_adapter(), path)
