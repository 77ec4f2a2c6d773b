"""Console authentication pieces: scrypt hashes, operator accounts, rate limit, unit names,
bind addresses, `ark api hash-password`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ark_runtime.api.operators import OperatorsError, parse_operators
from ark_runtime.api.passwords import HashFormatError, hash_password, parse, verify_password
from ark_runtime.api.server import bind_addresses
from ark_runtime.api.units import parse_show, valid_unit

FAST = {"n": 2**10}


@pytest.mark.requirement("SEC_02")
def test_scrypt_hash_verifies_and_salts():
    a, b = hash_password("s3cret", **FAST), hash_password("s3cret", **FAST)
    assert a != b  # per-user salt
    assert verify_password("s3cret", a) and not verify_password("s3cret!", a)
    assert "s3cret" not in a
    assert parse(a)[0] == 2**10


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_any_password_round_trips(pw):
    h = hash_password(pw, **FAST)
    assert verify_password(pw, h) and not verify_password(pw + "x", h)


@given(st.text(max_size=80))
def test_garbage_hashes_are_refused_by_name(text):
    try:
        parse(text)
    except HashFormatError as exc:
        assert str(exc).startswith("password_hash:")


def test_operators_validated_field_by_field():
    good = {"name": "alice", "role": "admin", "password_hash": hash_password("x", **FAST)}
    assert parse_operators([good])["alice"].is_admin
    cases = [({**good, "role": "root"}, "operators[0].role"),
             ({**good, "name": "Bad Name"}, "operators[0].name"),
             ({**good, "password_hash": "plaintext"}, "operators[0].password_hash")]
    for entry, field in cases:
        with pytest.raises(OperatorsError, match=field.replace("[", r"\[").replace("]", r"\]")):
            parse_operators([entry])
    with pytest.raises(OperatorsError, match="duplicate"):
        parse_operators([good, good])


@given(st.lists(st.dictionaries(st.sampled_from(["name", "role", "password_hash", "x"]),
                                st.text(max_size=20)), max_size=3))
def test_random_operator_lists_never_crash(data):
    try:
        parse_operators(data)
    except OperatorsError as exc:
        assert str(exc).startswith("operators")


@pytest.mark.requirement("UI_01")
def test_only_ark_units_are_controllable():
    for ok in ("ark.target", "ark-api.service", "ark-agent@kyle.service", "ark-snapshot.timer"):
        assert valid_unit(ok)
    for bad in ("sshd.service", "ark-api.service;reboot", "../ark.target", "ark-.service",
                "ark-agent@kyle.socket", "dbus.service", "ark-api.service\n"):
        assert not valid_unit(bad)


def test_parse_show_keeps_ark_units_only():
    text = ("Id=ark-api.service\nActiveState=active\nMainPID=12\n\n"
            "Id=sshd.service\nActiveState=active\n\nId=ark.target\nActiveState=active\n")
    assert [u["Id"] for u in parse_show(text)] == ["ark-api.service", "ark.target"]


def test_bind_adds_loopback_to_a_host_address():
    assert bind_addresses("10.0.0.5") == ["10.0.0.5", "127.0.0.1"]
    assert bind_addresses("127.0.0.1") == ["127.0.0.1"]
    assert bind_addresses("0.0.0.0") == ["0.0.0.0"]


@pytest.mark.requirement("SEC_02")
def test_hash_password_cli_reads_stdin_only():
    run = subprocess.run([sys.executable, "-m", "ark_runtime.cli", "api", "hash-password"],
                         input="correct horse\n", capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and verify_password("correct horse", run.stdout.strip())
    empty = subprocess.run([sys.executable, "-m", "ark_runtime.cli", "api", "hash-password"],
                           input="", capture_output=True, text=True, timeout=30)
    assert empty.returncode == 64 and "no password" in empty.stderr


def test_check_operators_names_the_bad_field(tmp_path):
    good = tmp_path / "ok.json"
    good.write_text(json.dumps([{"name": "a", "role": "viewer",
                                 "password_hash": hash_password("x", **FAST)}]))
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "a", "role": "viewer", "password_hash": "hunter2"}]')
    cmd = [sys.executable, "-m", "ark_runtime.cli", "api", "check-operators"]
    ok = subprocess.run([*cmd, str(good)], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    fail = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, timeout=30)
    assert fail.returncode == 65 and "operators[0].password_hash" in fail.stderr
    assert "hunter2" not in fail.stderr


def test_systemctl_failures_map_to_http_statuses():
    from ark_runtime.api.units import UnitDenied, UnitError, UnitNotFound, classify

    assert isinstance(classify("Unit ark-x.service not loaded."), UnitNotFound)
    assert isinstance(classify("Failed to stop: Access denied"), UnitDenied)
    assert type(classify("Job failed")) is UnitError
