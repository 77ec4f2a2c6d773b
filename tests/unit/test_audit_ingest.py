"""SEC_03: `ark audit ingest` moves the console's spool into the root chain exactly once;
a bad line is quarantined with an error naming its field, and nothing is lost."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ark_runtime.api import audit_hook
from ark_runtime.cli import main
from ark_runtime.host.audit import ingest as audit_ingest
from ark_runtime.host.audit.chain import iter_records, verify_dir
from ark_runtime.host.audit.ingest import QUARANTINE_NAME, claim, ingest
from ark_runtime.host.audit.log import AuditLog
from ark_runtime.host.audit.spool import SpoolLineError, parse_line

pytestmark = pytest.mark.requirement("SEC_03")


def good(who: str = "alice", action: str = "login", result: str = "ok", **args) -> dict:
    return {"ts": "2026-11-27T01:00:00.000001+00:00", "who": who, "where": "web1",
            "source": "api", "action": action, "args": args or {"client": "10.0.0.1"},
            "result": result, "detail": "", "duration_ms": 1.5,
            "correlation_id": "0b3d5a4c-1111-2222-3333-444455556666"}


def spool_lines(spool: Path, *lines: bytes) -> None:
    spool.mkdir(parents=True, exist_ok=True)
    with (spool / "api.jsonl").open("ab") as fh:
        for line in lines:
            fh.write(line + b"\n")


def line(rec: dict) -> bytes:
    return json.dumps(rec).encode()


def console_records(audit: Path) -> list[dict]:
    return [r for _f, r in iter_records(audit) if r["action"].startswith("console.")
            and r["action"] != "console.spool-rejected"]


def quarantined(audit: Path) -> list[dict]:
    q = audit / QUARANTINE_NAME
    return [json.loads(x) for x in q.read_text().splitlines()] if q.exists() else []


def test_api_records_reach_the_chain_marked_as_the_consoles(tmp_path: Path) -> None:
    spool, audit = tmp_path / "spool", tmp_path / "audit"
    audit_hook.record("alice", "login", {"client": "10.0.0.1"}, "failed",
                      detail="wrong name or password", directory=spool)
    audit_hook.record("bob", "unit.restart", {"unit": "ark-api.service"}, "ok",
                      duration_ms=12.5, directory=spool)
    audit_hook.record("eve", "login", {"client": "10.0.0.9"}, "refused", directory=spool)
    res = ingest(spool, AuditLog(audit))
    assert (res.ingested, res.quarantined) == (3, 0)
    assert list(spool.iterdir()) == []  # nothing left to trigger the path unit again
    failed, restart, refused = console_records(audit)
    assert (failed["who"], failed["action"], failed["result"]) == \
        ("console:alice", "console.login", "failed")
    assert failed["args"]["source"] == "api" and failed["args"]["client"] == "10.0.0.1"
    assert restart["duration"] == pytest.approx(0.0125)
    assert (refused["result"], refused["args"]["api_result"]) == ("failed", "refused")
    assert verify_dir(audit).ok


def test_a_spool_line_cannot_pass_for_root_or_another_host(tmp_path: Path) -> None:
    spool, audit = tmp_path / "spool", tmp_path / "audit"
    spool_lines(spool, line({**good(who="root", action="deploy"), "where": "elsewhere"}))
    ingest(spool, AuditLog(audit))
    [rec] = console_records(audit)
    assert rec["who"] == "console:root" and rec["action"] == "console.deploy"
    assert rec["where"] != "elsewhere"  # the ingester's own host


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda r: r.pop("who"), "who"),
    (lambda r: r.update(source="cli"), "source"),
    (lambda r: r.update(seq=7), "seq"),
    (lambda r: r.update(hash="0" * 64), "hash"),
    (lambda r: r.update(who="a\nb"), "who"),
    (lambda r: r.update(args={"spool": "x"}), "args"),
    (lambda r: r.update(args={"k": {"nested": 1}}), "args.k"),
    (lambda r: r.update(result="done"), "result"),
    (lambda r: r.update(duration_ms="1"), "duration_ms"),
    (lambda r: r.update(ts="yesterday"), "ts"),
    (lambda r: r.update(ts="2026-11-27T01:00:00.000000"), "ts"),
    (lambda r: r.update(action="Login; rm"), "action"),
])
def test_a_bad_line_is_refused_naming_its_field(mutate, field: str) -> None:
    rec = good()
    mutate(rec)
    with pytest.raises(SpoolLineError, match=rf"field {field}\b"):
        parse_line(line(rec))


def test_errors_never_quote_the_value(tmp_path: Path) -> None:
    rec = good()
    rec["detail"] = "hunter2-" + "x" * 600  # too long: refused, and the value is not quoted
    with pytest.raises(SpoolLineError) as err:
        parse_line(line(rec))
    assert "hunter2" not in str(err.value) and "field detail" in str(err.value)


def test_a_bad_line_is_kept_and_recorded_and_never_blocks_the_rest(tmp_path: Path) -> None:
    spool, audit = tmp_path / "spool", tmp_path / "audit"
    spool_lines(spool, line(good(who="a")), b"not json", line({**good(), "seq": 1}),
                line(good(who="b")))
    res = ingest(spool, AuditLog(audit))
    assert (res.ingested, res.quarantined) == (2, 2)
    assert [r["who"] for r in console_records(audit)] == ["console:a", "console:b"]
    kept = quarantined(audit)
    assert [k["line"] for k in kept] == ["not json", line({**good(), "seq": 1}).decode()]
    assert "field seq" in kept[1]["error"]
    rejected = [r for _f, r in iter_records(audit) if r["action"] == "console.spool-rejected"]
    assert [r["detail"] for r in rejected] == [k["error"] for k in kept]
    assert verify_dir(audit).ok


def test_a_crash_after_the_claim_loses_nothing(tmp_path: Path) -> None:
    spool, audit = tmp_path / "spool", tmp_path / "audit"
    spool_lines(spool, line(good(who="a")), line(good(who="b")))
    assert claim(spool) is not None  # ... and the ingester died here
    spool_lines(spool, line(good(who="c")))  # the API carries on in a new file
    ingest(spool, AuditLog(audit))
    assert [r["who"] for r in console_records(audit)] == \
        ["console:a", "console:b", "console:c"]


def test_a_crash_between_append_and_marker_does_not_duplicate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool, audit = tmp_path / "spool", tmp_path / "audit"
    spool_lines(spool, *(line(good(who=f"u{i}")) for i in range(4)))
    real, calls = audit_ingest._save_marker, []

    def dies_on_the_third(*a):
        calls.append(a)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the record of line 3 is written, its marker is not
        real(*a)

    monkeypatch.setattr(audit_ingest, "_save_marker", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        ingest(spool, AuditLog(audit))
    monkeypatch.setattr(audit_ingest, "_save_marker", real)
    assert ingest(spool, AuditLog(audit)).ingested == 1
    assert [r["who"] for r in console_records(audit)] == [f"console:u{i}" for i in range(4)]
    assert verify_dir(audit).ok


def test_a_link_under_a_claimed_name_is_not_followed(tmp_path: Path) -> None:
    spool, audit, secret = tmp_path / "spool", tmp_path / "audit", tmp_path / "secret"
    secret.write_text(json.dumps(good(who="shadow")) + "\n")
    spool.mkdir()
    (spool / "claimed-1.jsonl").symlink_to(secret)
    spool_lines(spool, b"\xff\xfe not utf-8")
    res = ingest(spool, AuditLog(audit))
    assert console_records(audit) == [] and secret.exists()
    kept = quarantined(audit)
    assert "symbolic link" in kept[0]["error"]
    assert base64.b64decode(kept[1]["line_base64"]) == b"\xff\xfe not utf-8"  # byte for byte
    assert res.quarantined == 2 and list(spool.iterdir()) == []


def test_a_spool_replaced_by_a_link_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    spool_lines(elsewhere, line(good()))
    (tmp_path / "spool").symlink_to(elsewhere)
    with pytest.raises(OSError, match="symbolic link"):
        ingest(tmp_path / "spool", AuditLog(tmp_path / "audit"))
    assert (elsewhere / "api.jsonl").exists()  # untouched


def test_cli_ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("ARK_AUDIT_DIR", str(tmp_path / "audit"))
    monkeypatch.setenv("ARK_AUDIT_SPOOL_DIR", str(tmp_path / "spool"))
    spool_lines(tmp_path / "spool", line(good()), b"{}")
    assert main(["audit", "ingest", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["ingested"], out["quarantined"]) == (1, 1)
    assert main(["audit", "ingest"]) == 0
    assert "ingested 0 console record(s)" in capsys.readouterr().out


# Generated spools: valid lines mixed with lines broken in one field each.
FIELDS = ("ts", "who", "where", "source", "action", "args", "result", "detail",
          "duration_ms", "correlation_id")
_BAD_VALUES = st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2),
                        st.text(max_size=3).map(lambda t: "\x00" + t))
_broken = st.tuples(st.sampled_from(FIELDS), st.booleans(), _BAD_VALUES)
_entry = st.one_of(st.builds(lambda w: ("ok", w), st.from_regex(r"[a-z]{1,12}", fullmatch=True)),
                   st.builds(lambda b: ("bad", b), _broken),
                   st.builds(lambda t: ("junk", t), st.binary(min_size=1, max_size=40)
                             .filter(lambda b: b"\n" not in b and b.strip())))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(_entry, min_size=1, max_size=12))
def test_generated_spools_lose_nothing(tmp_path_factory, entries) -> None:
    base = tmp_path_factory.mktemp("ingest")
    spool, audit = base / "spool", base / "audit"
    lines, expected_who, broken_fields = [], [], []
    for kind, value in entries:
        if kind == "ok":
            lines.append(line(good(who=value)))
            expected_who.append("console:" + value)
        elif kind == "bad":
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
            lines.append(line(rec))
            broken_fields.append(name)
        else:
            lines.append(value)
            broken_fields.append(None)
    spool_lines(spool, *lines)
    res = ingest(spool, AuditLog(audit))
    assert [r["who"] for r in console_records(audit)] == expected_who
    kept = quarantined(audit)
    assert res.quarantined == len(kept) == len(broken_fields)  # every bad line is kept
    for q, name in zip(kept, broken_fields, strict=True):
        if name is not None:
            assert f"field {name}" in q["error"], q["error"]
    assert verify_dir(audit).ok and list(spool.iterdir()) == []
