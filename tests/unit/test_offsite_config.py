"""REC_03: the off-host repository and its timer, read from the inventory; a bad field is
named and nothing runs."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ark_ops.errors import OpsError
from ark_ops.fleet.offsite import OffsiteError, repository_from_vars
from ark_ops.fleet.offsite_timer import render, unit_name, verify_units

pytestmark = pytest.mark.requirement("REC_03")
TARGET = {"ansible_host": "10.213.0.12", "inventory_hostname": "ark-lab-2",
          "ansible_ssh_common_args": "-o UserKnownHostsFile=/var/lib/ark-lab/ssh/known_hosts"}


def test_the_target_host_gives_an_sftp_repository_with_its_own_key(tmp_path: Path) -> None:
    repo = repository_from_vars(TARGET, {}, tmp_path / ".secrets")
    assert repo.url == "sftp:ark-backup@10.213.0.12:/srv/ark-restic/repo"
    ssh = shlex.split(repo.ssh_command)
    assert ssh[ssh.index("-i") + 1] == str(tmp_path / ".secrets" / "offsite_ed25519")
    assert "StrictHostKeyChecking=yes" in ssh and "IdentitiesOnly=yes" in ssh
    assert "UserKnownHostsFile=/var/lib/ark-lab/ssh/known_hosts" in ssh
    assert ssh[-3:] == ["ark-backup@10.213.0.12", "-s", "sftp"]
    assert (repo.keep_daily, repo.keep_weekly) == (7, 4)


def test_the_password_goes_by_file_never_on_the_command_line(tmp_path: Path) -> None:
    repo = repository_from_vars(TARGET, {"ark_offsite_keep_daily": "14"}, tmp_path)
    with pytest.raises(OffsiteError, match="no restic password"):
        repo.env()
    repo.password_file.write_text("hunter2-not-on-argv\n")
    env = repo.env()
    assert env["RESTIC_PASSWORD_FILE"] == str(repo.password_file)
    assert "RESTIC_PASSWORD" not in env
    assert not any("hunter2" in a for a in repo.argv("backup", "."))
    assert repo.keep_daily == 14


def test_no_target_and_no_url_is_refused_naming_both(tmp_path: Path) -> None:
    with pytest.raises(OffsiteError, match="ark_backup_target.*ark_offsite_repository"):
        repository_from_vars(None, {}, tmp_path)


def test_an_explicit_repository_wins(tmp_path: Path) -> None:
    repo = repository_from_vars(None, {"ark_offsite_repository": "/mnt/usb/ark"}, tmp_path)
    assert repo.url == "/mnt/usb/ark" and repo.ssh_command is None


@pytest.mark.parametrize("field,value", [
    ("ark_offsite_keep_daily", 0), ("ark_offsite_keep_weekly", "many"),
    ("ark_offsite_keep_daily", True), ("ark_offsite_user", "root; rm"),
    ("ark_offsite_path", "relative/path"), ("ansible_host", "-oProxyCommand=x"),
    ("ark_offsite_repository", "--password=x"),
])
def test_a_bad_field_is_refused_by_name(tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(OffsiteError, match=field):
        repository_from_vars({**TARGET, field: value}, {}, tmp_path)


@given(st.dictionaries(st.sampled_from(["ark_offsite_user", "ark_offsite_path",
                                        "ark_offsite_keep_daily", "ansible_host"]),
                       st.one_of(st.text(max_size=30), st.integers(-5, 50), st.none())))
def test_any_vars_give_a_repository_or_a_named_refusal(overrides: dict) -> None:
    try:
        repo = repository_from_vars({**TARGET, **overrides}, {}, Path("/nonexistent"))
    except OffsiteError as exc:
        assert any(k in str(exc) for k in overrides)
        return
    assert repo.url.startswith("sftp:") and "\n" not in repo.ssh_command


def test_the_timer_runs_offsite_backup_for_the_inventory_and_verifies(tmp_path: Path) -> None:
    inv = tmp_path / "prod"
    inv.mkdir()
    units = render(inv, on_calendar="*-*-* 03:15", user="ops")
    service = units["ark-offsite-backup-prod.service"]
    assert f"offsite.backup --inventory {inv}" in service and "User=ops" in service
    assert "OnCalendar=*-*-* 03:15" in units["ark-offsite-backup-prod.timer"]
    assert "Persistent=true" in units["ark-offsite-backup-prod.timer"]
    verify_units(units)


def test_a_broken_unit_does_not_verify(tmp_path: Path) -> None:
    inv = tmp_path / "prod"
    inv.mkdir()
    units = render(inv)
    units = {k: v.replace("Type=oneshot", "Type=sometimes") for k, v in units.items()}
    with pytest.raises(OpsError, match="do not verify"):
        verify_units(units)


def test_a_calendar_with_shell_or_newlines_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OpsError, match="--on-calendar"):
        render(tmp_path, on_calendar="daily\nExecStartPre=/bin/sh")


@given(st.text(max_size=40))
def test_any_randomized_delay_renders_one_line_or_is_refused_by_name(delay: str) -> None:
    inv = Path(__file__).parent  # any existing directory
    try:
        units = render(inv, randomized_delay=delay)
    except OpsError as exc:
        assert "--randomized-delay" in str(exc) and "\n" not in str(exc)
        return
    timer = next(text for name, text in units.items() if name.endswith(".timer"))
    assert f"\nRandomizedDelaySec={delay}\n" in timer and delay.strip() and "\n" not in delay


def test_the_timer_fires_without_spread_when_asked(tmp_path: Path) -> None:
    units = render(tmp_path, on_calendar="*:*:0/20", randomized_delay="0")
    assert "RandomizedDelaySec=0\n" in units[f"{unit_name(tmp_path)}.timer"]
    verify_units(units)
