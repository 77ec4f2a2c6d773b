"""The verify report: a requirement × host table that shows failures and missing tags."""

from __future__ import annotations

pytest_plugins = ["pytester"]

SUITE = """
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
    result = pytester.runpytest("-p", "ark_ops.report", f"--requirements-report={md}",
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
