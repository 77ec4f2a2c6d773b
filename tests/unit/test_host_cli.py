"""Issue #7 §3: every host CLI answers a bad command line with 64 (ArkArgumentParser), and
`ark`'s main() turns the project's own errors into one sentence and their code."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ark_runtime import cli
from ark_runtime.exitcodes import ExitCode
from ark_runtime.host.snapshot.snapshots import SnapshotKeyError
from ark_runtime.hrm.ruleset import RulesetError
from ark_runtime.lock import AlreadyRunning
from ark_runtime.store import StoreError


@pytest.mark.parametrize("argv", [
    ["ports", "check", "--bogus"],
    ["heal", "--bogus"],
    ["snapshot", "prune", "--keep-last", "-1"],
    ["snapshot", "create", "--reason", "pre-restore"],
    ["dr", "bundle", "--snapshots", "many"],
    ["dr", "restore"],
    ["trace"],
    ["no-such-command"],
])
def test_usage_errors_exit_64(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == ExitCode.USAGE == 64
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(("error", "code"), [
    (SnapshotKeyError("cannot read the snapshot key /etc/ark/snapshot.key: root-only"), 77),
    (RulesetError("/etc/ark/HRM_RULESET.yaml", ["rules[0]: must be a mapping"]), 78),
    (StoreError("store.db: schema differs\nsecond line"), 65),
    (AlreadyRunning("hrm", Path("/run/ark/hrm.lock"), "42"), 75),
])
def test_project_errors_become_one_sentence(error: Exception, code: int,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    parsed = cli.build_parser().parse_args(["version"])

    def fails(args: argparse.Namespace) -> int:
        raise error

    parsed.func = fails
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", lambda self, argv=None: parsed)
    assert cli.main(["version"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ark version: ") and "Traceback" not in err


def test_a_bug_still_shows_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = cli.build_parser().parse_args(["version"])

    def bug(args: argparse.Namespace) -> int:
        raise ZeroDivisionError("a bug")

    parsed.func = bug
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", lambda self, argv=None: parsed)
    with pytest.raises(ZeroDivisionError):
        cli.main(["version"])
