"""The evidence `invoke verify` keeps per check: the commands testinfra ran on the host, their
exit status and output, as JUnit properties, with the inventory's secrets masked. A real
pytest run with the report plugin and testinfra's local backend."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from ark_ops.verify.evidence import MAX_COMMANDS

REPO = Path(__file__).resolve().parents[2]
SECRET = "Zq8-evidence-secret-41"

CHECKS = f'''
import pytest

@pytest.mark.requirement("DOC_01")
def test_says_hello(host):
    assert host.run("echo hello; echo {SECRET} >&2").rc == 0

@pytest.mark.requirement("DOC_01")
def test_many_commands(host):
    for i in range({MAX_COMMANDS + 5}):
        host.run("true %s", str(i))

def test_fails(host):
    assert host.run("exit 3").rc == 0
'''


def run_checks(tmp_path: Path) -> dict[str, list[str]]:
    (tmp_path / "test_checks.py").write_text(CHECKS)
    inventory = tmp_path / "inv"
    (inventory / ".secrets").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all: {hosts: {localhost: {}}}\n")
    (inventory / ".secrets" / "redis_password").write_text(SECRET)
    junit = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", str(tmp_path / "test_checks.py"),
                    "-p", "ark_ops.verify.report", "-p", "no:cacheprovider", "--hosts=local://",
                    f"--ansible-inventory={inventory / 'hosts.yml'}", f"--junitxml={junit}",
                    "-o", "junit_family=xunit2", "-q", "--rootdir", str(tmp_path)],
                   cwd=REPO, capture_output=True, text=True, check=False)
    return {case.get("name"): [p.get("value") for p in case.iter("property")
                               if p.get("name") == "evidence"]
            for case in ET.parse(junit).getroot().iter("testcase")}


def test_each_check_keeps_its_commands_output_and_exit_status(tmp_path: Path) -> None:
    evidence = run_checks(tmp_path)
    hello = evidence["test_says_hello[local]"]
    assert hello[-1] == "$ echo hello; echo *** >&2\n[exit 0]\nhello\n***"
    assert all(SECRET not in e for e in sum(evidence.values(), []))
    assert evidence["test_fails[local]"][-1] == "$ exit 3\n[exit 3]"
    many = evidence["test_many_commands[local]"]
    assert len(many) == MAX_COMMANDS and many[0].startswith("$ true ")
    assert (tmp_path / "junit.xml").read_text().count(SECRET) == 0
