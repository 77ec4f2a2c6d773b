"""DEPLOY_01: the per-host normalization report (found / changed / refused) that
`invoke deploy` renders from the ark_baseline role's findings."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ark_ops.deploy import baseline as baseline_report
from ark_ops.deploy.baseline import STATUSES, Finding
from ark_ops.errors import OpsError

pytestmark = pytest.mark.requirement("DEPLOY_01")


def write(directory, host, checks):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{host}.json").write_text(json.dumps({"host": host, "checks": checks}))


def test_report_lists_every_host_and_check_with_what_happened(tmp_path):
    write(tmp_path / "f", "ark-lab-1", {
        "os": {"found": "Debian 12.7", "status": "ok", "note": ""},
        "overcommit sysctl.d file": {"found": "missing or different", "status": "changed",
                                     "note": "rewritten"},
        "time sync": {"found": "unsynchronised (container)", "status": "warn",
                      "note": "enable NTP on that machine"}})
    write(tmp_path / "f", "ark-lab-2", {
        "python": {"found": "3.9.2", "status": "refused", "note": "install a newer python3"}})
    hosts = baseline_report.write(tmp_path / "f", tmp_path / "out" / "b.md")
    text = (tmp_path / "out" / "b.md").read_text()
    assert "| ark-lab-1 | overcommit sysctl.d file | missing or different | changed |" in text
    assert "| ark-lab-2 | python | 3.9.2 | refused | install a newer python3 |" in text
    assert baseline_report.summary(hosts) == [
        "ark-lab-1: 1 ok, 1 changed, 1 warn; changed: overcommit sysctl.d file",
        "ark-lab-2: 1 refused; refused: python"]


def test_nothing_changed_reads_as_all_ok(tmp_path):
    write(tmp_path, "h", {"os": {"found": "Debian 12", "status": "ok", "note": ""},
                          "ports": {"found": "free", "status": "ok"}})
    assert baseline_report.summary(baseline_report.load(tmp_path)) == ["h: 2 ok"]


def test_clear_drops_last_runs_hosts(tmp_path):
    write(tmp_path, "old", {"os": {"found": "x", "status": "ok"}})
    baseline_report.clear(tmp_path)
    assert baseline_report.load(tmp_path) == {}
    assert "No host reached" in baseline_report.render_markdown({})


def test_a_pipe_or_newline_in_a_value_cannot_break_the_table():
    text = baseline_report.render_markdown(
        {"h": [Finding("disk /a|b", "1 MiB\nfree", "refused", "x | y")]})
    row = text.splitlines()[-1]
    assert row == "| h | disk /a\\|b | 1 MiB free | refused | x \\| y |"


@pytest.mark.parametrize("doc, field", [
    ([], "'checks'"),
    ({"checks": []}, "'checks'"),
    ({"checks": {"os": "ok"}}, "checks.os must be an object"),
    ({"checks": {"os": {"status": "ok"}}}, "checks.os.found"),
    ({"checks": {"os": {"found": "x", "status": 1}}}, "checks.os.status"),
    ({"checks": {"os": {"found": "x", "status": "fix"}}}, "checks.os.status is 'fix'"),
])
def test_a_bad_findings_file_names_the_file_and_field(tmp_path, doc, field):
    (tmp_path / "h1.json").write_text(json.dumps(doc))
    with pytest.raises(OpsError) as err:
        baseline_report.load(tmp_path)
    assert "h1.json" in str(err.value) and field in str(err.value)


def test_a_truncated_findings_file_is_a_clear_error(tmp_path):
    (tmp_path / "h1.json").write_text('{"checks": {')
    with pytest.raises(OpsError, match="h1.json"):
        baseline_report.load(tmp_path)


finding = st.fixed_dictionaries(
    {"found": st.text(max_size=30), "status": st.sampled_from(STATUSES)},
    optional={"note": st.one_of(st.text(max_size=30), st.integers(), st.none())})


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=20), finding, max_size=8))
def test_any_valid_findings_render_one_row_each_and_count_right(checks):
    findings = baseline_report.parse_findings("h.json", {"checks": checks})
    text = baseline_report.render_markdown({"h": findings})
    rows = [line for line in text.splitlines() if line.startswith("| h |")]
    assert len(rows) == len(checks)
    assert all(len(re.split(r"(?<!\\)\|", row)) == 7 for row in rows)  # 5 cells
    line = baseline_report.summary({"h": findings})[0]
    counts = line.split(";")[0]
    for status in STATUSES:
        n = sum(1 for c in checks.values() if c["status"] == status)
        assert (f"{n} {status}" in counts.split(": ", 1)[1].split(", ")) == (n > 0)
