"""SEC_03 (control side): the control node's record of every admin action, also when the
action fails or is interrupted; per-host results make ok / partial / failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ark_ops.deploy.playbook import ansible_env
from ark_ops.errors import OpsError
from ark_ops.fleet import config_history as fleet_config
from ark_ops.fleet import dr as fleet_dr
from ark_ops.fleet import panic as fleet_panic
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
    assert done["who"] == "carol" and done["args"]["password"] == "***"
    assert done["args"]["limit"] == "web*"
    assert "web1: ok" in done["detail"] and "web2: failed (unreachable)" in done["detail"]
    assert verify_dir(state_dir(inv)).ok


def test_the_correlation_id_reaches_the_hosts_environment(inv: str) -> None:
    import os

    # Passed explicitly (ansible-playbook's env, the remote scripts' arguments), never by
    # patching this process's environment.
    before = dict(os.environ)
    with audit_action("recover", {}, inv) as rec:
        assert rec.identity.env()["ARK_CORRELATION_ID"] == rec.correlation_id
        assert rec.identity.env()["ARK_ACTOR"] == "carol"
        assert ansible_env(identity=rec.identity)["ARK_CORRELATION_ID"] == rec.correlation_id
        assert dict(os.environ) == before
    assert "ARK_CORRELATION_ID" not in os.environ


def _unreachable_inventory(inv: str) -> str:
    """One host in group ark on a loopback port nothing listens on: the real fleet code
    paths run (inventory, SSH connect, per-host outcome, host records) and fail fast."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: connect is refused
    Path(inv).write_text(
        "all:\n  children:\n    ark:\n      hosts:\n        gone1:\n"
        f"          ansible_host: 127.0.0.1\n          ansible_port: {port}\n"
        "          ansible_user: root\n")
    return inv


@pytest.mark.parametrize("call, action", [
    (lambda inv: fleet_panic.panic(inventory=inv, log=lambda *_: None), "panic"),
    (lambda inv: fleet_panic.recover(inventory=inv, log=lambda *_: None), "recover"),
    (lambda inv: fleet_config.rollback(1, inventory=inv, log=lambda *_: None), "config.rollback"),
    (lambda inv: fleet_dr.dr_bundle(inventory=inv, out_dir=Path(inv).parent / "dr",
                                    log=lambda *_: None), "dr-bundle"),
    (lambda inv: fleet_dr.dr_restore(str(Path(inv).parent / "none.tar.gz"), "gone1",
                                     inventory=inv, log=lambda *_: None), "dr-restore"),
])
def test_a_fleet_action_called_directly_leaves_a_record(inv: str, call, action: str) -> None:
    # Issue #17: the record is made in ark_ops, not in tasks.py: a benchmark or a test that
    # calls the function is audited like `invoke panic` (a refused restore too).
    try:
        call(_unreachable_inventory(inv))
    except OpsError as exc:
        assert action == "dr-restore" and "does not exist" in str(exc)
    started, done = records(inv)
    assert (started["action"], started["result"]) == (action, "started")
    assert (done["action"], done["result"], done["who"]) == (action, "failed", "carol")
    assert started["correlation_id"] == done["correlation_id"]
    assert "gone1: failed" in done["detail"]
    assert "gone1: host record not written" in done["detail"]
    assert verify_dir(state_dir(inv)).ok


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


def test_no_product_module_imports_unittest() -> None:
    # Issue #17: the audit identity once reached children through mock.patch.dict(os.environ)
    # in product code; test doubles stay in tests.
    import ast

    root = Path(__file__).resolve().parents[2]
    files = [root / "tasks.py", *(p for top in ("ark_ops", "ark_runtime", "plugins")
                                  for p in (root / top).rglob("*.py"))]
    offenders = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "unittest" or n.startswith("unittest.") for n in names):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
