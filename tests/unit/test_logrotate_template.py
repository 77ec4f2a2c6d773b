"""LOG_01: the logrotate config the roles render, checked by the validator the roles use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

REPO = Path(__file__).resolve().parents[2]
VALIDATE = REPO / "roles" / "ark_runtime" / "files" / "ark-logrotate-validate"

needs_logrotate = pytest.mark.skipif(shutil.which("logrotate") is None,
                                     reason="logrotate is not installed (./ops installs it)")


def render(log_dir: str = "/var/log/ark") -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(REPO / "templates" / "logrotate"),
                             undefined=jinja2.StrictUndefined)
    return env.get_template("ark.j2").render(
        ansible_managed="test", ark_runtime_log_dir=log_dir, ark_runtime_user="ark",
        ark_runtime_group="ark", ark_runtime_logrotate_keep=14)


def blocks(text: str) -> dict[str, list[str]]:
    """{path pattern: its directives}, comments dropped."""
    out: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.endswith("{"):
            current = line[:-1].strip()
            out[current] = []
        elif line == "}":
            current = None
        elif line and current:
            out[current].append(line)
    return out


@pytest.mark.requirement("LOG_01")
def test_agent_logs_rotate_daily_or_at_50mb_compressed_and_recreated() -> None:
    ark = blocks(render())["/var/log/ark/*.log"]
    for directive in ("daily", "maxsize 50M", "compress", "delaycompress",
                      "create 0640 ark ark", "rotate 14"):
        assert directive in ark
    # Root rotates: heal.log may be root's (heal recreates it), and su ark could not
    # compress it.
    assert not any(d.startswith("su ") for d in ark)
    assert not any(d.startswith("copytruncate") for d in ark), "copytruncate loses lines"


@pytest.mark.requirement("LOG_01")
def test_audit_logs_are_root_only_and_kept_52_weeks() -> None:
    audit = blocks(render())["/var/log/ark/audit/*.log"]
    for directive in ("weekly", "rotate 52", "compress", "create 0600 root root"):
        assert directive in audit


@needs_logrotate
@pytest.mark.requirement("LOG_01")
def test_the_validator_accepts_the_rendered_config(tmp_path: Path) -> None:
    (tmp_path / "audit").mkdir()
    conf = tmp_path / "ark"
    conf.write_text(render(str(tmp_path)).replace("create 0640 ark ark", "create 0640 root root"))
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
    text = render(str(tmp_path)).replace("create 0640 ark ark", "create 0640 root root")
    conf.write_text(text.replace(*mutation, 1))
    proc = subprocess.run(["sh", str(VALIDATE), str(conf)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "error" in proc.stderr
