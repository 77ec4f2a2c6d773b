"""LOG_01: the logrotate config the roles render, checked by the validator the roles use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

REPO = Path(__file__).resolve().parents[2]
ROLE_TEMPLATES = REPO / "roles" / "ark_runtime" / "templates"
VALIDATE = REPO / "roles" / "ark_runtime" / "files" / "ark-logrotate-validate"

needs_logrotate = pytest.mark.skipif(shutil.which("logrotate") is None,
                                     reason="logrotate is not installed (./ops installs it)")


def render(log_dir: str = "/var/log/ark") -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE_TEMPLATES / "logrotate"),
                             undefined=jinja2.StrictUndefined)
    return env.get_template("ark.j2").render(
        ansible_managed="test", ark_runtime_log_dir=log_dir, ark_runtime_user="ark",
        ark_runtime_group="ark", ark_runtime_logrotate_keep=14,
        ark_runtime_logrotate_names=["kyle", "joey", "kenny", "hrm"])


def local(text: str) -> str:
    """The config with this machine's root instead of the ark user (no ark user here)."""
    return text.replace("su ark ark", "su root root").replace("0640 ark ark", "0640 root root") \
        .replace("0640 root ark", "0640 root root")


def blocks(text: str) -> dict[str, list[str]]:
    """{file name or pattern: its directives}, comments dropped; a block may name several
    files, one per line, before its `{`."""
    out: dict[str, list[str]] = {}
    names: list[str] = []
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if current is None:
            head, brace, _ = line.partition("{")
            names += head.split()
            if brace:
                current = []
                for name in names:
                    out[name] = current
                names = []
        elif line == "}":
            current = None
        else:
            current.append(line)
    return out


@pytest.mark.requirement("LOG_01")
def test_agent_logs_rotate_daily_or_at_50mb_compressed_and_recreated() -> None:
    conf = blocks(render())
    for agent in ("kyle", "joey", "kenny", "hrm"):
        ark = conf[f"/var/log/ark/{agent}.log"]
        for directive in ("daily", "maxsize 50M", "compress", "delaycompress",
                          "create 0640 ark ark", "rotate 14", "su ark ark"):
            assert directive in ark
        assert not any(d.startswith("copytruncate") for d in ark), "copytruncate loses lines"
    # heal.log is root's (`ark heal` runs as root): rotated by root into root:ark.
    heal = conf["/var/log/ark/heal.log"]
    assert "create 0640 root ark" in heal and not any(d.startswith("su ") for d in heal)


@pytest.mark.requirement("LOG_01")
def test_audit_logs_are_root_only_and_kept_52_weeks() -> None:
    audit = blocks(render())["/var/log/ark/audit/*.log"]
    for directive in ("weekly", "rotate 52", "compress", "create 0600 root root"):
        assert directive in audit


@pytest.mark.requirement("SEC_03")
def test_the_audit_chains_disk_use_is_capped_by_size() -> None:
    """Issue 21, vuln 7: a flood of records rotates by size, not only weekly."""
    audit = blocks(render())["/var/log/ark/audit/*.log"]
    assert "maxsize 20M" in audit and "rotate 52" in audit


@needs_logrotate
@pytest.mark.requirement("LOG_01")
def test_the_validator_accepts_the_rendered_config(tmp_path: Path) -> None:
    (tmp_path / "audit").mkdir()
    conf = tmp_path / "ark"
    conf.write_text(local(render(str(tmp_path))))
    proc = subprocess.run(["sh", str(VALIDATE), str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@needs_logrotate
@pytest.mark.parametrize("mutation", [
    ("    daily\n", "    dayly\n"),
    ("    compress\n", "    compres\n"),
    ("create 0640 root root", "create 0640 nosuchuser root"),
])
def test_the_validator_refuses_what_logrotate_only_warns_about(tmp_path: Path,
                                                               mutation: tuple[str, str]) -> None:
    conf = tmp_path / "ark"
    text = local(render(str(tmp_path)))
    conf.write_text(text.replace(*mutation, 1))
    proc = subprocess.run(["sh", str(VALIDATE), str(conf)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "error" in proc.stderr
