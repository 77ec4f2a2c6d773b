"""SEC_03 (host side): records, redaction, the audited() context, `ark audit ...`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_helpers import build_chain, load, rotate, store
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ark_runtime.cli import main
from ark_runtime.host.audit.chain import LOG_NAME, iter_records, verify_dir
from ark_runtime.host.audit.log import AuditError, AuditLog, audited, redact
from ark_runtime.redact import MASK as REDACTED

pytestmark = pytest.mark.requirement("SEC_03")


@pytest.fixture
def audit_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "audit"
    monkeypatch.setenv("ARK_AUDIT_DIR", str(d))
    monkeypatch.setenv("ARK_ACTOR", "alice@control")
    return d


def records(d: Path) -> list[dict]:
    return [r for _f, r in iter_records(d)]


def test_started_then_ok_with_duration_and_one_correlation_id(audit_dir: Path) -> None:
    with audited("snapshot.restore", {"id": "latest"}, correlation_id="c0ffee"):
        pass
    started, done = records(audit_dir)
    assert (started["result"], done["result"]) == ("started", "ok")
    assert started["correlation_id"] == done["correlation_id"] == "c0ffee"
    assert done["who"] == "alice@control" and done["args"] == {"id": "latest"}
    assert done["duration"] >= 0 and done["ts"].endswith("Z") and done["where"]


@pytest.mark.parametrize("exc, detail", [(RuntimeError("disk full"), "RuntimeError: disk full"),
                                         (KeyboardInterrupt(), "interrupted")])
def test_failed_or_interrupted_action_is_recorded(audit_dir: Path, exc: BaseException,
                                                  detail: str) -> None:
    with pytest.raises(type(exc)), audited("dead.purge", {}):
        raise exc
    done = records(audit_dir)[-1]
    assert done["result"] == "failed" and done["detail"] == detail
    assert verify_dir(audit_dir).ok


def test_partial_result(audit_dir: Path) -> None:
    with audited("deploy", {}) as rec:
        rec.result, rec.detail = "partial", "1 of 2 hosts failed"
    assert records(audit_dir)[-1]["result"] == "partial"


def test_action_refused_when_the_log_cannot_be_written(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ARK_AUDIT_DIR", str(blocker / "audit"))
    ran = []
    with pytest.raises(AuditError, match="cannot write the audit log"), audited("x", {}):
        ran.append(1)
    assert ran == []


@settings(max_examples=200, deadline=None)
@given(secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126),
                      min_size=8, max_size=40),
       key=st.sampled_from(["password", "ARK_REDIS_PASSWORD", "api_token", "SessionKey",
                            "secret"]))
def test_secrets_never_reach_a_record(secret: str, key: str) -> None:
    def doc(value: str) -> dict:
        return {key: value, "cmd": f"deploy {key}={value}", "note": f"x {value} y",
                "nested": [{"token": value}]}

    # A "secret" that is part of the text around it (or of the marker) cannot be told apart.
    assume(secret not in json.dumps(doc("")) + REDACTED)
    red = redact(doc(secret), {"ARK_API_SECRET": secret})
    assert secret not in json.dumps(red)
    assert red[key] == REDACTED


def test_redaction_keeps_ordinary_arguments() -> None:
    assert redact({"limit": "ark-lab-1", "check": True, "n": 3}, {}) == \
        {"limit": "ark-lab-1", "check": True, "n": 3}


def test_record_show_verify_from_the_cli(audit_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["audit", "record", "--action", "deploy", "--result", "ok", "--arg",
                 "limit=web1", "--correlation-id", "abc123", "--duration", "1.5"]) == 0
    head = json.loads(capsys.readouterr().out)
    assert head["seq"] == 0 and len(head["hash"]) == 64
    main(["audit", "record", "--action", "panic", "--result", "failed", "--who", "bob"])
    capsys.readouterr()
    assert main(["audit", "show", "--json", "--who", "bob"]) == 0
    [row] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert row["action"] == "panic" and row["result"] == "failed"
    assert main(["audit", "show", "--action", "deploy"]) == 0
    out = capsys.readouterr().out
    assert "deploy" in out and "limit=web1" in out and "panic" not in out
    assert main(["audit", "verify"]) == 0
    assert "audit chain ok: 2 records" in capsys.readouterr().out


def test_cli_verify_names_the_bad_record_and_exits_65(audit_dir: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    build_chain(audit_dir, [3, 3])
    files = load(audit_dir)
    rec = json.loads(files["audit.log.1"][1])
    rec["who"] = "mallory"
    files["audit.log.1"][1] = json.dumps(rec).encode()
    store(audit_dir, files)
    assert main(["audit", "verify"]) == 65
    assert "audit.log.1 seq 1" in capsys.readouterr().err
    assert main(["audit", "verify", "--json"]) == 65
    doc = json.loads(capsys.readouterr().out)
    assert (doc["bad_file"], doc["bad_seq"]) == ("audit.log.1", 1)


def test_cli_verify_against_a_head_kept_elsewhere(audit_dir: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    log = build_chain(audit_dir, [4])
    kept = json.loads((audit_dir / "head.json").read_text())
    log.append(action="later", result="ok")
    assert main(["audit", "verify", "--expect-seq", str(kept["seq"]),
                 "--expect-hash", kept["hash"]]) == 0
    assert main(["audit", "verify", "--expect-seq", "9", "--expect-hash", kept["hash"]]) == 65
    assert "seq 9 was written" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["audit", "record", "--action", "x", "--result", "bogus"],
                                  ["audit", "record", "--action", "bad name", "--result", "ok"],
                                  ["audit", "record", "--action", "x", "--result", "ok",
                                   "--arg", "novalue"],
                                  ["audit", "show", "--since", "yesterday-ish"]])
def test_bad_input_is_refused_and_writes_nothing(audit_dir: Path, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code != 0
    assert not (audit_dir / LOG_NAME).exists()


def test_show_since_and_limit_across_rotation(audit_dir: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    build_chain(audit_dir, [3])
    rotate(audit_dir)
    AuditLog(audit_dir).append(action="after.rotation", result="ok")
    assert main(["audit", "show", "--since", "1h", "--limit", "2", "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["seq"] for r in rows] == [2, 3] and rows[-1]["action"] == "after.rotation"


def test_admin_commands_are_recorded(audit_dir: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ARK_SNAPSHOT_DIR", str(tmp_path / "state" / "snapshots"))
    (tmp_path / "state").mkdir()
    assert main(["snapshot", "restore", "latest"]) == 1  # nothing to restore: failed
    started, done = records(audit_dir)
    assert (started["action"], started["result"]) == ("snapshot.restore", "started")
    assert (done["result"], done["detail"], done["args"]) == ("failed", "exit 1",
                                                              {"id": "latest"})


@settings(max_examples=100, deadline=None)
@given(action=st.text(max_size=300), arg=st.text(max_size=50))
def test_any_cli_input_is_recorded_or_refused_whole(tmp_path_factory, action: str,
                                                    arg: str) -> None:
    import os

    d = tmp_path_factory.mktemp("audit")
    os.environ["ARK_AUDIT_DIR"] = str(d)
    try:
        code = main(["audit", "record", "--action", action, "--result", "ok", "--arg", arg])
    except SystemExit as exc:
        code = exc.code
    finally:
        del os.environ["ARK_AUDIT_DIR"]
    rows = records(d)
    if code == 0:
        assert [r["action"] for r in rows] == [action] and verify_dir(d).ok
    else:
        assert code == 64, code  # ExitCode.USAGE, from ArkArgumentParser
        assert rows == []
