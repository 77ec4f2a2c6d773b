"""SEC_03 (control side): the control node's record of every admin action, also when the
action fails or is interrupted; per-host results make ok / partial / failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ark_ops.fleet.audit import actor, audit_action, load_heads, state_dir
from ark_ops.fleet.ssh import HostOutcome
from ark_runtime.host.audit.chain import iter_records, verify_dir

pytestmark = pytest.mark.requirement("SEC_03")


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ARK_ACTOR", "carol")
    (tmp_path / "prod").mkdir()
    return str(tmp_path / "prod" / "hosts.yml")  # no hosts file: nothing to reach


def records(inv: str) -> list[dict]:
    return [r for _f, r in iter_records(state_dir(inv))]


def test_state_lives_beside_the_inventory_and_is_private(inv: str) -> None:
    d = state_dir(inv)
    assert d == Path(inv).parent / ".state" / "audit"
    assert (d.stat().st_mode & 0o777) == 0o700


def test_started_then_result_with_per_host_outcomes(inv: str) -> None:
    with audit_action("panic", {"password": "hunter22", "n": 1}, inv, "web*") as rec:
        rec.outcomes([HostOutcome("web1", True, 0.1), HostOutcome("web2", False, 0.2,
                                                                   error="unreachable")])
    started, done = records(inv)
    assert started["result"] == "started" and done["result"] == "partial"
    assert started["correlation_id"] == done["correlation_id"]
    assert done["who"] == "carol" and done["args"]["password"] == "<redacted>"
    assert done["args"]["limit"] == "web*"
    assert "web1: ok" in done["detail"] and "web2: failed (unreachable)" in done["detail"]
    assert verify_dir(state_dir(inv)).ok


def test_the_correlation_id_reaches_the_hosts_environment(inv: str) -> None:
    import os

    with audit_action("recover", {}, inv) as rec:
        assert os.environ["ARK_CORRELATION_ID"] == rec.correlation_id
        assert os.environ["ARK_ACTOR"] == "carol"
    assert "ARK_CORRELATION_ID" not in os.environ


@pytest.mark.parametrize("exc, why", [(RuntimeError("boom"), "boom"),
                                      (KeyboardInterrupt(), "interrupted")])
def test_failure_and_interrupt_are_recorded(inv: str, exc: BaseException, why: str) -> None:
    with pytest.raises(type(exc)), audit_action("deploy", {"check": False}, inv):
        raise exc
    done = records(inv)[-1]
    assert done["result"] == "failed" and done["detail"].startswith(why)


def test_a_failed_playbook_still_names_the_failing_host(inv: str) -> None:
    from ark_ops.deploy.playbook import PlaybookFailed, PlaybookResult

    result = PlaybookResult(2, {"a": {"ok": 9, "failed": 0}, "b": {"ok": 3, "failed": 1}})
    with pytest.raises(PlaybookFailed), audit_action("deploy", {}, inv):
        raise PlaybookFailed("site.yml failed", result)
    done = records(inv)[-1]
    assert done["result"] == "partial" and "b: failed (failed=1" in done["detail"]


def test_mark_failed_and_all_hosts_failed(inv: str) -> None:
    with audit_action("verify.disruptive", {}, inv) as rec:
        rec.mark_failed("compliance checks failed (exit 1)")
    assert records(inv)[-1]["result"] == "failed"
    with audit_action("dr-bundle", {}, inv) as rec:
        rec.outcomes([HostOutcome("a", False, 1.0, error="x")])
    assert records(inv)[-1]["result"] == "failed"
    assert load_heads(inv) == {}


def test_actor_defaults_to_login_at_control_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARK_ACTOR", raising=False)
    assert "@" in actor()
