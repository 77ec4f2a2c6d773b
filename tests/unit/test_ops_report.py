"""The verify report: a requirement × host table that shows failures and missing tags."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SUITE = """
from pathlib import Path

import pytest

@pytest.mark.requirement("INFRA_01")
def test_up():
    assert True

@pytest.mark.requirement("INFRA_01")
def test_restart():
    assert False, "did not come back"

@pytest.mark.requirement("SEC_01")
def test_password():
    pass

def test_without_a_tag():
    pass
"""


def test_table_marks_a_requirement_failed_when_any_check_fails(pytester, tmp_path):
    pytester.makeini("[pytest]\nmarkers =\n    requirement(id): proves a requirement\n")
    pytester.makepyfile(SUITE)
    md = tmp_path / "report.md"
    result = pytester.runpytest("-p", "ark_ops.verify.report", f"--requirements-report={md}",
                                f"--junitxml={tmp_path / 'r.xml'}")
    result.assert_outcomes(passed=3, failed=1)
    # Rows are sorted; an untagged check is shown, not dropped.
    result.stdout.fnmatch_lines(["*requirements × hosts*", "(untagged)*pass*", "INFRA_01*FAIL*",
                                 "SEC_01*pass*", "FAIL INFRA_01 on local:*test_restart*"])
    text = md.read_text()
    assert "| INFRA_01 | FAIL |" in text
    assert "| SEC_01 | pass |" in text
    junit = (tmp_path / "r.xml").read_text()
    assert 'name="requirement" value="SEC_01"' in junit


def test_table_is_complete_when_pytest_xdist_workers_run_the_checks(pytester, tmp_path,
                                                                     monkeypatch):
    """invoke verify checks several hosts with pytest-xdist: the setups run in the workers,
    and the controller's table must still have every result."""
    pytester.makeini("[pytest]\nmarkers =\n    requirement(id): proves a requirement\n")
    pytester.makepyfile(SUITE)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    md = tmp_path / "report.md"
    result = pytester.runpytest_subprocess("-p", "ark_ops.verify.report",
                                           f"--requirements-report={md}",
                                           "-n", "2", "--dist", "loadgroup")
    result.assert_outcomes(passed=3, failed=1)
    text = md.read_text()
    assert "| INFRA_01 | FAIL |" in text
    assert "| SEC_01 | pass |" in text
    assert "| (untagged) | pass |" in text


def test_every_catalogue_requirement_has_a_row_with_its_title(pytester, tmp_path):
    pytester.makeini("[pytest]\nmarkers =\n    requirement(id): proves a requirement\n")
    pytester.makepyfile(SUITE)
    md = tmp_path / "report.md"
    result = pytester.runpytest("-p", "ark_ops.verify.report", f"--requirements-report={md}")
    text = md.read_text()
    # Checked ones keep their cells (title last); unchecked ones are listed, not dropped.
    assert "| INFRA_01 | FAIL | supervision |" in text
    assert "| DOC_01 | not covered | LAUNCH.md |" in text
    assert "| GOV_02 | not covered | versioned config |" in text
    assert "| (untagged) | pass | checks without a requirement marker |" in text
    result.stdout.fnmatch_lines(["INFRA_01*FAIL*supervision", "LOG_02*not covered*live tail",
                                 "32 of 35 requirements have no check in this run"])


LEAKY = """
from pathlib import Path

import pytest

SECRET = open({secret_file!r}).read().strip()

class CommandResult:
    def __repr__(self):
        return f"CommandResult(command=b'REDISCLI_AUTH={{SECRET}} redis-cli ping', rc=1)"

@pytest.mark.requirement("SEC_01")
def test_leaks_everywhere():
    print("stdout has", SECRET)
    import logging; logging.getLogger("x").warning("log has %s", SECRET)
    assert CommandResult() is None, f"message has {{SECRET}}"

@pytest.mark.requirement("SEC_01")
def test_skip_reason_leaks():
    pytest.skip(f"reason has {{SECRET}}")
"""


@pytest.mark.requirement("SEC_01")
def test_no_secret_reaches_console_junit_or_markdown(pytester, tmp_path):
    secret = "Zq8" + "x7Kp2" * 7  # as Ansible's password lookup makes them: 38 alnum
    inventory = tmp_path / "inv"
    (inventory / ".secrets").mkdir(parents=True)
    (inventory / ".secrets" / "redis_password").write_text(secret + "\n")
    (inventory / "hosts.yml").write_text("all: {}\n")
    pytester.makeini("[pytest]\nmarkers =\n    requirement(id): proves a requirement\n")
    pytester.makepyfile(LEAKY.format(secret_file=str(inventory / ".secrets/redis_password")))
    md, xml = tmp_path / "report.md", tmp_path / "r.xml"
    result = pytester.runpytest(
        "-p", "ark_ops.verify.report", f"--requirements-report={md}", f"--junitxml={xml}",
        f"--ansible-inventory={inventory / 'hosts.yml'}", "-rA", "-o", "junit_logging=all")
    result.assert_outcomes(failed=1, skipped=1)
    console = result.stdout.str() + result.stderr.str()
    # The failure is still there to read, only the value is gone.
    assert "REDISCLI_AUTH=*** redis-cli ping" in console
    assert "stdout has ***" in console and "message has ***" in console
    for name, text in (("console", console), ("JUnit", xml.read_text()),
                       ("Markdown", md.read_text())):
        assert secret not in text, f"the secret is in the {name} output"
    assert "REDISCLI_AUTH=***" in xml.read_text()


@pytest.mark.requirement("SEC_01")
def test_verify_masks_the_inventory_secrets_in_everything_it_prints(tmp_path, monkeypatch):
    from ark_ops.paths import REPO_ROOT
    from ark_ops.verify import run as verify_mod

    secret = "Pw" + "9dK3m" * 8
    inventory = tmp_path / "inventory"
    (inventory / ".secrets").mkdir(parents=True)
    (inventory / ".secrets" / "redis_password").write_text(secret + "\n")
    (inventory / "hosts.yml").write_text("all: {}\n")
    # A stand-in repo whose suite prints the secret outside any test report (after
    # pytest's capture has ended), where only verify's own stream mask can catch it.
    suite = tmp_path / "repo" / "tests" / "compliance"
    suite.mkdir(parents=True)
    (suite / "conftest.py").write_text(
        f"def pytest_unconfigure(config):\n    print('late output: {secret}')\n")
    (suite / "test_ok.py").write_text("def test_ok():\n    pass\n")
    monkeypatch.setattr(verify_mod, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    lines: list[str] = []
    rc = verify_mod.verify(inventory=str(inventory / "hosts.yml"), reports_dir=tmp_path / "r",
                           echo=lines.append, log=lambda _msg: None)
    console = "".join(lines)
    assert rc == 0, console
    assert "late output: ***" in console
    assert secret not in console


def test_verify_checks_a_fleet_with_one_worker_per_host_unless_it_disrupts(tmp_path):
    from ark_ops.verify import run as verify_mod

    def inventory(n: int, lab: bool = False) -> Path:
        path = tmp_path / f"hosts{n}{lab}.yml"
        hosts = "".join(f"        h{i}: {{ansible_host: 127.0.0.{i + 1}}}\n" for i in range(n))
        path.write_text(f"all:\n  vars: {{ark_lab: {str(lab).lower()}}}\n  children:\n"
                        f"    ark:\n      hosts:\n{hosts}    other:\n      hosts: {{x: {{}}}}\n")
        return path

    parallel = ["-n", "3", "--dist", "loadgroup"]
    assert verify_mod.parallel_args(inventory(3), None) == parallel
    assert verify_mod.parallel_args(inventory(3), "h1") == []  # one host: no workers to start
    assert verify_mod.parallel_args(inventory(12), None)[1] == str(verify_mod.MAX_WORKERS)
    # Disruptive checks (asked for, or on lab hosts) run one host at a time ...
    assert verify_mod.parallel_args(inventory(3), None, disruptive=True) == []
    assert verify_mod.parallel_args(inventory(3, lab=True), None) == []
    # ... unless the keyword leaves them out.
    assert verify_mod.parallel_args(inventory(3, lab=True), None,
                                    keyword="not disruptive") == parallel
    empty = tmp_path / "empty.yml"
    empty.write_text("all: {}\n")
    assert verify_mod.parallel_args(empty, None) == []
