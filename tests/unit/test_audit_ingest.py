"""SEC_03 (issue 21, vuln 6): `ark audit ingest` takes the console's records from the journal
into the root chain exactly once, believes only entries journald stamped as ark-api.service's
and the API user's, and refuses forgeries, replays and bad records, naming the field, losing
nothing. The journal entries are `journalctl -o json` lines, built here or received from the
real audit_hook over the native protocol (tests/support/journal.py)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ark_runtime.api import audit_hook
from ark_runtime.host.audit import ingest as audit_ingest
from ark_runtime.host.audit.chain import iter_records, verify_dir
from ark_runtime.host.audit.console_record import RecordError, parse_message
from ark_runtime.host.audit.ingest import (
    QUARANTINE_NAME,
    STATE_NAME,
    Ingester,
    Trust,
    journalctl_command,
)
from ark_runtime.host.audit.log import AuditLog
from tests.support.journal import FakeJournald, parse_native

pytestmark = pytest.mark.requirement("SEC_03")
API_UID = 998
TRUST = Trust(unit="ark-api.service", uid=API_UID)


def good(who: str = "alice", action: str = "login", result: str = "ok", seq: int = 1,
         **args) -> dict:
    return {"ts": "2026-11-27T01:00:00.000001+00:00", "who": who, "where": "web1",
            "source": "api", "action": action, "args": args or {"client": "10.0.0.1"},
            "result": result, "detail": "", "duration_ms": 1.5,
            "correlation_id": "0b3d5a4c-1111-2222-3333-444455556666", "seq": seq}


_cursors = iter(range(10**9))


def entry(message: dict | str | bytes, *, unit: str = "ark-api.service", uid: int = API_UID,
          pid: int = 4242, invocation: str = "inv-a", **extra) -> bytes:
    """One line of `journalctl -o json`, as journald would have stamped it."""
    if isinstance(message, dict):
        message = json.dumps(message)
    e = {"__CURSOR": f"s=x;i={next(_cursors):x}", "MESSAGE": message,
         "ARK_CONSOLE_AUDIT": "1", "_SYSTEMD_UNIT": unit, "_UID": str(uid), "_PID": str(pid),
         "_SYSTEMD_INVOCATION_ID": invocation, "_COMM": "ark", **extra}
    if isinstance(message, bytes):
        e["MESSAGE"] = list(message)
    return json.dumps({k: v for k, v in e.items() if v is not None}).encode()


def ingest(audit: Path, *lines: bytes, trust: Trust = TRUST) -> audit_ingest.IngestResult:
    audit.mkdir(parents=True, exist_ok=True)
    return Ingester(AuditLog(audit), trust).run(lines)


def console_records(audit: Path) -> list[dict]:
    return [r for _f, r in iter_records(audit) if r["action"].startswith("console.")
            and r["action"] not in ("console.journal-refused", "console.audit-gap")]


def chain(audit: Path, action: str) -> list[dict]:
    return [r for _f, r in iter_records(audit) if r["action"] == action]


def quarantined(audit: Path) -> list[dict]:
    q = audit / QUARANTINE_NAME
    return [json.loads(x) for x in q.read_text().splitlines()] if q.exists() else []


def test_the_apis_records_cross_the_native_protocol_and_reach_the_chain(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = FakeJournald().start()
    monkeypatch.setenv("ARK_AUDIT_JOURNAL_SOCKET", str(journal.path))
    monkeypatch.delenv("ARK_AUDIT_SINK", raising=False)
    monkeypatch.setattr(audit_hook, "_seq", 0)  # a fresh API process
    audit_hook.record("alice", "login", {"client": "10.0.0.1"}, "failed",
                      detail="wrong name or password\nsecond line")
    audit_hook.record("bob", "unit.restart", {"unit": "ark-api.service"}, "ok",
                      duration_ms=12.5)
    audit_hook.record("eve", "login", {"client": "10.0.0.9"}, "refused")
    lines = journal.json_lines()
    journal.close()
    audit = tmp_path / "audit"
    res = Ingester(AuditLog(audit), Trust("ark-api.service", os.getuid())).run(lines)
    assert (res.ingested, res.refused, res.gaps) == (3, 0, 0)
    failed, restart, refused = console_records(audit)
    assert (failed["who"], failed["action"], failed["result"]) == \
        ("console:alice", "console.login", "failed")
    assert failed["detail"] == "wrong name or password\nsecond line"
    assert failed["args"]["source"] == "api" and failed["args"]["api_seq"] == 1
    assert restart["duration"] == pytest.approx(0.0125)
    assert (refused["result"], refused["args"]["api_result"]) == ("failed", "refused")
    assert verify_dir(audit).ok


def test_the_api_refuses_to_act_unrecorded_when_journald_is_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARK_AUDIT_JOURNAL_SOCKET", str(tmp_path / "no-such-socket"))
    monkeypatch.delenv("ARK_AUDIT_SINK", raising=False)
    monkeypatch.setattr(audit_hook, "_seq", 0)
    with pytest.raises(OSError):
        audit_hook.record("alice", "unit.stop", {"unit": "ark-api.service"}, "ok")
    assert audit_hook._seq == 0  # the number was not spent: no false gap later


def test_a_datagram_is_the_native_protocol() -> None:
    data = audit_hook.native_datagram({"MESSAGE": b"a\nb", "PRIORITY": b"6"})
    assert parse_native(data) == {"MESSAGE": "a\nb", "PRIORITY": "6"}


@pytest.mark.parametrize(("forged", "why"), [
    # an agent (same uid ark) with systemd-cat / logger --journald / its own datagram
    ({"unit": "ark-agent@joey.service"}, "field _SYSTEMD_UNIT is ark-agent@joey.service"),
    ({"unit": None}, "field _SYSTEMD_UNIT is missing"),  # a process in no unit (a login shell)
    ({"uid": 0}, "field _UID is 0"),  # inside the unit, but not the API's user
    ({"unit": "ark-api.service.d"}, "field _SYSTEMD_UNIT"),
])
def test_an_entry_journald_did_not_stamp_as_the_apis_is_refused_and_named(
        tmp_path: Path, forged: dict, why: str) -> None:
    audit = tmp_path / "audit"
    lookalike = entry(good(who="victor", action="unit.stop", unit="ark-api.service"), **forged)
    res = ingest(audit, entry(good(who="alice", seq=1)), lookalike,
                 entry(good(who="alice", seq=2)))
    assert (res.ingested, res.refused) == (2, 1)
    assert [r["who"] for r in console_records(audit)] == ["console:alice", "console:alice"]
    [refusal] = chain(audit, "console.journal-refused")
    assert why in refusal["detail"] and "victor" not in json.dumps(refusal)
    if forged.get("unit"):
        assert refusal["args"]["sender_unit"] == forged["unit"]
    [kept] = quarantined(audit)
    assert kept["entry"] == lookalike.decode()  # kept whole, beside the chain
    assert verify_dir(audit).ok


def test_a_forged_trusted_field_sent_by_a_client_never_arrives() -> None:
    """journald drops underscore fields a client sends; the stand-in does the same."""
    data = audit_hook.native_datagram({"MESSAGE": b"{}", "_SYSTEMD_UNIT": b"ark-api.service"})
    assert "_SYSTEMD_UNIT" not in parse_native(data)


def test_a_gap_is_recorded_and_a_replay_refused(tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    res = ingest(audit, *(entry(good(who=f"u{n}", seq=n)) for n in (1, 2, 5, 5, 4, 6)))
    assert (res.ingested, res.refused, res.gaps) == (4, 2, 1)
    assert [r["who"] for r in console_records(audit)] == \
        ["console:u1", "console:u2", "console:u5", "console:u6"]
    [gap] = chain(audit, "console.audit-gap")
    assert gap["args"]["missing"] == "3..4" and gap["args"]["api_stream"] == "inv-a/4242"
    refused = [r["detail"] for r in chain(audit, "console.journal-refused")]
    assert refused == ["field seq: 5 repeats or goes back (last was 5)",
                       "field seq: 4 repeats or goes back (last was 5)"]


def test_each_api_process_counts_from_one(tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    res = ingest(audit, entry(good(seq=1)), entry(good(seq=2)),
                 entry(good(seq=1), invocation="inv-b"),  # restarted
                 entry(good(seq=1), invocation="inv-b", pid=5000),  # a second worker
                 entry(good(seq=3), invocation="inv-c"))  # its first two never arrived
    assert (res.ingested, res.refused, res.gaps) == (5, 0, 1)
    [gap] = chain(audit, "console.audit-gap")
    assert (gap["args"]["api_stream"], gap["args"]["missing"]) == ("inv-c/4242", "1..2")


def test_the_state_carries_over_between_runs(tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    first = entry(good(seq=1))
    ingest(audit, first)
    state = json.loads((audit / STATE_NAME).read_text())
    assert state["cursor"] == json.loads(first)["__CURSOR"]
    assert oct((audit / STATE_NAME).stat().st_mode & 0o777) == "0o600"
    ingester = Ingester(AuditLog(audit), TRUST)
    assert journalctl_command(ingester.cursor, follow=False)[-2] == \
        f"--after-cursor={state['cursor']}"
    res = ingester.run([entry(good(seq=1)), entry(good(seq=2))])  # a replay, then the next
    assert (res.ingested, res.refused) == (1, 1)


def test_a_crash_between_append_and_state_does_not_duplicate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    audit = tmp_path / "audit"
    lines = [entry(good(who=f"u{n}", seq=n)) for n in range(1, 5)]
    real, calls = Ingester._save_state, []

    def dies_on_the_third(self, cursor):
        calls.append(cursor)
        if len(calls) == 3:
            raise KeyboardInterrupt  # record 3 is in the chain, the state still says 2
        real(self, cursor)

    monkeypatch.setattr(Ingester, "_save_state", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        ingest(audit, *lines)
    monkeypatch.setattr(Ingester, "_save_state", real)
    ingester = Ingester(AuditLog(audit), TRUST)
    assert ingester.cursor == json.loads(lines[1])["__CURSOR"]
    res = ingester.run(lines[2:])  # journalctl --after-cursor gives 3 and 4 again
    assert (res.ingested, res.refused, res.gaps) == (1, 0, 0)
    assert [r["who"] for r in console_records(audit)] == [f"console:u{n}" for n in range(1, 5)]
    assert verify_dir(audit).ok


def test_a_record_cannot_pass_for_root_or_another_host(tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    ingest(audit, entry({**good(who="root", action="deploy"), "where": "elsewhere"}))
    [rec] = console_records(audit)
    assert rec["who"] == "console:root" and rec["action"] == "console.deploy"
    assert rec["where"] != "elsewhere"  # the ingester's own host


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda r: r.pop("who"), "who"),
    (lambda r: r.pop("seq"), "seq"),
    (lambda r: r.update(seq=0), "seq"),
    (lambda r: r.update(seq="1"), "seq"),
    (lambda r: r.update(source="cli"), "source"),
    (lambda r: r.update(hash="0" * 64), "hash"),
    (lambda r: r.update(who="a\nb"), "who"),
    (lambda r: r.update(args={"journal": "x"}), "args"),
    (lambda r: r.update(args={"api_stream": "x"}), "args"),
    (lambda r: r.update(args={"k": {"nested": 1}}), "args.k"),
    (lambda r: r.update(result="done"), "result"),
    (lambda r: r.update(duration_ms="1"), "duration_ms"),
    (lambda r: r.update(ts="yesterday"), "ts"),
    (lambda r: r.update(ts="2026-11-27T01:00:00.000000"), "ts"),
    (lambda r: r.update(action="Login; rm"), "action"),
])
def test_a_bad_record_is_refused_naming_its_field(mutate, field: str) -> None:
    rec = good()
    mutate(rec)
    with pytest.raises(RecordError, match=rf"field {field}\b"):
        parse_message(json.dumps(rec))


def test_errors_never_quote_the_value() -> None:
    rec = good()
    rec["detail"] = "hunter2-" + "x" * 600  # too long: refused, and the value is not quoted
    with pytest.raises(RecordError) as err:
        parse_message(json.dumps(rec))
    assert "hunter2" not in str(err.value) and "field detail" in str(err.value)


@pytest.mark.parametrize(("raw", "why"), [
    (b"not json", "the journal entry is not JSON"),
    (b"[1]", "a JSON list, not an object"),
    (b'{"MESSAGE": "x"}', "field __CURSOR is missing"),
    (b"\xff\xfe", "not JSON"),
])
def test_a_broken_journal_line_is_kept_byte_for_byte(tmp_path: Path, raw: bytes,
                                                     why: str) -> None:
    audit = tmp_path / "audit"
    res = ingest(audit, raw, entry(good()))
    assert (res.ingested, res.refused) == (1, 1)
    [kept] = quarantined(audit)
    assert why in kept["error"]
    got = kept["entry"].encode() if "entry" in kept else base64.b64decode(kept["entry_base64"])
    assert got == raw


@pytest.mark.parametrize(("fields", "why"), [
    ({"MESSAGE": ["a", "b"]}, "field MESSAGE is missing or appears more than once"),
    ({"MESSAGE": None}, "field MESSAGE is missing"),
    ({"_SYSTEMD_UNIT": ["ark-api.service", "x"]}, "field _SYSTEMD_UNIT appears more than once"),
    ({"_PID": None}, "field _PID is missing"),
])
def test_odd_journal_fields_are_refused_naming_them(tmp_path: Path, fields: dict,
                                                    why: str) -> None:
    e = json.loads(entry(good()))
    e.update(fields)
    e = {k: v for k, v in e.items() if v is not None}
    res = ingest(tmp_path / "audit", json.dumps(e).encode())
    assert res.refused == 1 and why in res.problems[0]


def test_a_message_that_is_not_utf8_is_refused_not_lost(tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    res = ingest(audit, entry(b"\xff{}"))
    assert res.refused == 1 and "MESSAGE is not JSON" in res.problems[0]
    assert quarantined(audit)[0]["entry"]


def test_the_follow_command_reads_every_marked_entry_after_the_cursor() -> None:
    assert journalctl_command(None, follow=True) == [
        "journalctl", "--output=json", "--all", "--no-pager", "--quiet", "--follow",
        "--no-tail", "ARK_CONSOLE_AUDIT=1"]


# Generated journals: the API's records mixed with forgeries, broken records and junk.
FIELDS = ("ts", "who", "where", "source", "action", "args", "result", "detail",
          "duration_ms", "correlation_id")
_BAD_VALUES = st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2),
                        st.text(max_size=3).map(lambda t: "\x00" + t))
_kind = st.one_of(
    st.builds(lambda w: ("ok", w), st.from_regex(r"[a-z]{1,12}", fullmatch=True)),
    st.builds(lambda b: ("bad", b), st.tuples(st.sampled_from(FIELDS), st.booleans(),
                                               _BAD_VALUES)),
    st.builds(lambda u: ("forged", u), st.sampled_from(
        ["ark-agent@joey.service", "ark-agent@hrm.service", "session-1.scope", None])),
    st.builds(lambda t: ("junk", t), st.binary(min_size=1, max_size=40)
              .filter(lambda b: b"\n" not in b and b.strip())))


def _broken(value: tuple) -> dict:
    name, drop, bad = value
    rec = good()
    if drop:
        del rec[name]
    elif name in ("detail", "duration_ms") and bad is None:
        rec[name] = [bad]  # None is valid there (no detail, no duration)
    elif name == "duration_ms" and isinstance(bad, int):
        rec[name] = -1 - abs(bad)  # 0 and up is a valid duration; below 0 is not
    elif name == "detail" and isinstance(bad, str):
        rec[name] = "x" * 501 + bad  # any text is a detail; too long is not
    else:
        rec[name] = bad
    return rec


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(_kind, min_size=1, max_size=12))
def test_generated_journals_lose_nothing_and_believe_only_the_api(tmp_path_factory,
                                                                  kinds) -> None:
    audit = tmp_path_factory.mktemp("ingest") / "audit"
    lines, expected_who, why = [], [], []
    seq = 0
    for kind, value in kinds:
        if kind == "ok":
            seq += 1
            lines.append(entry(good(who=value, seq=seq)))
            expected_who.append("console:" + value)
        elif kind == "bad":
            lines.append(entry({**_broken(value), "seq": seq + 1}))
            why.append(f"field {value[0]}")
        elif kind == "forged":  # a perfect record, from the wrong sender
            lines.append(entry(good(who="victor", seq=seq + 1), unit=value))
            why.append("field _SYSTEMD_UNIT")
        else:
            lines.append(value)
            why.append("journal entry")
    res = ingest(audit, *lines)
    assert [r["who"] for r in console_records(audit)] == expected_who
    assert res.gaps == 0  # a refused record never spends the API's number
    kept = quarantined(audit)
    assert res.refused == len(kept) == len(why)  # every refused entry is kept
    for q, expect in zip(kept, why, strict=True):
        assert expect in q["error"], q["error"]
    assert len(chain(audit, "console.journal-refused")) == len(why)
    assert verify_dir(audit).ok
