"""SEC_02: allow-list validators accept the known-good shapes and reject the rest."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ark_runtime import validators as v

pytestmark = pytest.mark.requirement("SEC_02")


@pytest.mark.parametrize("symbol", ["AAPL", "BRK.B", "BTC-USD", "ETH-USDT", "F", "SPY500"])
def test_symbol_accepts_real_tickers(symbol: str) -> None:
    assert v.validate_symbol(symbol) == symbol


@pytest.mark.parametrize(
    "symbol",
    [
        "aapl",
        "AAPL;DROP TABLE",
        "AA PL",
        "AAPL ",
        "A" * 30,
        "",
        "BTC--USD",
        "BRK.B.C",
        "1ABC",
        "ÄPPL",
        "AAPL\n",
        "../etc",
        "BTC-usd",
    ],
)
def test_symbol_rejects(symbol: str) -> None:
    with pytest.raises(v.SymbolError):
        v.validate_symbol(symbol)


def test_symbol_rejects_non_string() -> None:
    with pytest.raises(v.SymbolError, match="must be a string"):
        v.validate_symbol(42)


def test_overlong_symbol_message_names_length() -> None:
    with pytest.raises(v.SymbolError, match="longer than"):
        v.validate_symbol("A" * 30)


@pytest.mark.parametrize("name", v.AGENT_NAMES)
def test_agent_names_from_registry(name: str) -> None:
    assert v.validate_agent_name(name) == name


@pytest.mark.parametrize("name", ["Kyle", "bob", "", "kyle ", None, "hrm;rm"])
def test_agent_name_rejects(name: object) -> None:
    with pytest.raises(v.AgentNameError, match="unknown agent"):
        v.validate_agent_name(name)


def test_registry_is_the_five_agents() -> None:
    assert set(v.AGENT_NAMES) == {"kyle", "joey", "kenny", "hrm", "executor"}


def test_id_accepts_uuid_and_canonicalises() -> None:
    value = str(uuid.uuid4())
    assert v.validate_id(value) == value
    assert v.validate_id(value.upper()) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not-a-uuid",
        "{12345678-1234-5678-1234-567812345678}",
        "urn:uuid:12345678-1234-5678-1234-567812345678",
        "1234",
        7,
    ],
)
def test_id_rejects(value: object) -> None:
    with pytest.raises(v.IdError):
        v.validate_id(value, "correlation_id")


def test_id_message_names_the_field() -> None:
    with pytest.raises(v.IdError, match="correlation_id"):
        v.validate_id("nope", "correlation_id")


def test_path_inside_base(tmp_path: Path) -> None:
    (tmp_path / "snap").mkdir()
    assert v.validate_path("snap/a.db", tmp_path) == (tmp_path / "snap" / "a.db").resolve()
    assert v.validate_path(str(tmp_path / "snap"), tmp_path) == (tmp_path / "snap").resolve()


@pytest.mark.parametrize("raw", ["../etc/passwd", "a/../../x", "/etc/passwd", "", "a\x00b"])
def test_path_rejects_escape(tmp_path: Path, raw: str) -> None:
    with pytest.raises(v.PathError):
        v.validate_path(raw, tmp_path)


def test_path_rejects_dotdot_even_if_it_stays_inside(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(v.PathError, match=r"'\.\.'"):
        v.validate_path("a/../a", tmp_path)


def test_path_rejects_symlink_escaping(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, base / "link")
    with pytest.raises(v.PathError, match="outside"):
        v.validate_path("link/secret", base)


def test_path_allows_symlink_inside(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    assert v.validate_path("alias/x", tmp_path) == (tmp_path / "real" / "x").resolve()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://api.example.com:8443/x?y=1",
        "redis://127.0.0.1:6379/0",
        "rediss://:secret@redis.internal:6380/1",
    ],
)
def test_url_accepts(url: str) -> None:
    assert v.validate_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "http://",
        "example.com",
        "http://exa mple.com",
        "http://host:99999/",
        "http://host:abc/",
        "",
    ],
)
def test_url_rejects(url: str) -> None:
    with pytest.raises(v.UrlError):
        v.validate_url(url)


def test_http_credentials_refused_without_opt_in_and_not_echoed() -> None:
    with pytest.raises(v.UrlError) as info:
        v.validate_url("https://user:hunter2@example.com/")
    assert "hunter2" not in str(info.value)
    assert v.validate_url("https://user:hunter2@example.com/", allow_credentials=True)


def test_all_errors_are_value_errors() -> None:
    # Boundaries may catch ValueError generically (pydantic does); keep that true.
    for cls in (v.SymbolError, v.AgentNameError, v.PathError, v.UrlError, v.IdError):
        assert issubclass(cls, v.ValidationError)
        assert issubclass(cls, ValueError)


anything = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=40),
    st.integers(),
    st.none(),
    st.floats(allow_nan=True),
    st.lists(st.text(max_size=5), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(anything)
def test_fuzz_symbol_agent_id_url_only_raise_their_error(value: object) -> None:
    for fn in (v.validate_symbol, v.validate_agent_name, v.validate_id, v.validate_url):
        with contextlib.suppress(v.ValidationError):
            fn(value)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), st.binary(max_size=20), st.integers(), st.none()))
def test_fuzz_path_only_raises_path_error(
    tmp_path_factory: pytest.TempPathFactory, value: object
) -> None:
    base = tmp_path_factory.getbasetemp()
    try:
        result = v.validate_path(value, base)
    except v.PathError:
        return
    resolved_base = Path(base).resolve()
    assert result == resolved_base or resolved_base in result.parents


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Z][A-Z0-9]{0,9}([.\-][A-Z0-9]{1,10})?", fullmatch=True))
def test_fuzz_valid_symbols_round_trip(symbol: str) -> None:
    assert v.validate_symbol(symbol) == symbol
