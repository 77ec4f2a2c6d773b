"""The HTML compliance report's parts: JUnit parsing, the matrix, the history, and that no
form of a secret reaches the page (hypothesis). The whole page in a browser, built from a
real run: tests/integration/test_compliance_report_browser.py."""

from __future__ import annotations

import html
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ark_ops.redact import Redactor, forms
from ark_ops.verify import html as report_html
from ark_ops.verify.html import Check, matrix, parse_junit, render, update_history

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.compliance.test_files" name="test_a[ansible://h1]" time="0.5">
 <properties><property name="requirement" value="DEPLOY_01"/><property name="host" value="h1"/>
 <property name="evidence" value="$ stat /opt/ark&#10;[exit 0]&#10;ok"/></properties></testcase>
<testcase classname="tests.compliance.test_files" name="test_b[ansible://h1]" time="0.1">
 <properties><property name="requirement" value="DEPLOY_01"/><property name="requirement"
 value="SEC_01"/><property name="host" value="h1"/></properties>
 <failure message="AssertionError: mode 644">trace</failure><system-out>said</system-out>
</testcase>
<testcase classname="tests.compliance.test_files" name="test_a[ansible://h2]" time="0.2">
 <properties><property name="requirement" value="DEPLOY_01"/><property name="host" value="h2"/>
 </properties><skipped message="disturbs the host"/></testcase>
<testcase classname="tests.compliance.test_x" name="test_untagged" time="0">
 <properties><property name="host" value="h2"/></properties><error message="boom"/></testcase>
</testsuite></testsuites>"""
TITLES = {"DEPLOY_01": "normalization", "SEC_01": "credentials", "DOC_01": "LAUNCH.md"}


def checks(tmp_path: Path) -> list[Check]:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    return parse_junit(path)


def test_parse_junit_reads_outcomes_properties_and_output(tmp_path: Path) -> None:
    got = checks(tmp_path)
    assert [(c.host, c.outcome, c.requirements) for c in got] == [
        ("h1", "passed", ["DEPLOY_01"]), ("h1", "failed", ["DEPLOY_01", "SEC_01"]),
        ("h2", "skipped", ["DEPLOY_01"]), ("h2", "error", ["(untagged)"])]
    assert got[0].nodeid == "tests/compliance/test_files.py::test_a[ansible://h1]"
    assert got[0].evidence == ["$ stat /opt/ark\n[exit 0]\nok"]
    assert got[1].message == "AssertionError: mode 644" and got[1].output == "said"


def test_matrix_states(tmp_path: Path) -> None:
    hosts, rows = matrix(checks(tmp_path), TITLES)
    assert hosts == ["h1", "h2"]
    by_req = {r.requirement: (r.cells, r.title) for r in rows}
    assert by_req["DEPLOY_01"] == (["fail", "skip"], "normalization")
    assert by_req["SEC_01"] == (["fail", "none"], "credentials")  # checked on h1 only
    assert by_req["DOC_01"] == (["not-covered", "not-covered"], "LAUNCH.md")
    assert by_req["(untagged)"] == (["none", "fail"], "checks without a requirement marker")
    assert report_html.summary(rows) == {"fail": 3, "skip": 0, "pass": 0, "none": 0,
                                         "not-covered": 1}


def test_history_keeps_the_newest_runs_and_sets_a_broken_file_aside(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    for i in range(report_html.HISTORY_KEEP + 5):
        runs = update_history(path, {"generated": str(i)})
    assert len(runs) == report_html.HISTORY_KEEP and runs[-1]["generated"] == str(i)
    assert json.loads(path.read_text()) == runs
    path.write_text("{not json")
    assert update_history(path, {"generated": "new"}) == [{"generated": "new"}]
    assert (tmp_path / "history.unreadable.json").read_text() == "{not json"  # kept


def page(found: list[Check], secrets: list[str], inventory_text: str = "all: {}") -> str:
    return render(found, titles=TITLES, inventory="inventory/x/hosts.yml",
                  inventory_text=inventory_text, commit="abc123", generated="now",
                  history=[{"generated": "then", "commit": "abc", "inventory": "i",
                            "requirements": {"pass": 1, "fail": 2}}],
                  redact=Redactor(secrets))


def test_the_page_shows_matrix_evidence_and_trend(tmp_path: Path) -> None:
    text = page(checks(tmp_path), [])
    assert 'data-req="SEC_01" data-host="h2" data-state="none"' in text
    assert "$ stat /opt/ark" in text and "AssertionError: mode 644" in text
    assert text.count('<div class="fail" style="width: 66.67%"') == 1  # the trend's bar
    assert "<script" not in text and "http" not in text.replace("http-equiv", "")


SECRET = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="*"),
                 min_size=12, max_size=40)


@settings(max_examples=80, deadline=None)
@given(secret=SECRET, where=st.sampled_from(["nodeid", "host", "message", "details",
                                              "evidence", "output", "inventory"]))
def test_no_form_of_a_secret_reaches_the_page(secret: str, where: str) -> None:
    check = Check("tests/compliance/test_s.py::test_s", "h1", ["SEC_01"], "failed",
                  message="m", details="d", evidence=["$ e"], output="o")
    text = f"before {secret} after"
    inventory_text = "all: {}"
    if where == "evidence":
        check.evidence = [text]
    elif where == "inventory":
        inventory_text = text
    else:
        setattr(check, where, text)
    out = page([check], [secret], inventory_text)
    assert not [f for f in forms(secret) | {html.escape(secret, quote=False)} if f in out]
    assert "before *** after" in out
