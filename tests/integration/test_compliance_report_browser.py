"""The HTML compliance report in a real browser (Debian's chromium through Playwright).

`ark_ops.verify.run.verify` runs real compliance checks (tests/compliance, read-only ones and
disruptive ones that skip off the lab) against a fixture inventory of two hosts reached with
Ansible's local connection: this machine, where ARK is not deployed, so the checks really
pass, fail and skip. The page it writes is opened in chromium and every matrix cell is
compared with the JUnit XML of the same run, read here independently. A value the fixture
inventory keeps as a secret appears in the checks' commands and tracebacks: the page must
show it masked. Screenshot: reports/compliance-report.png.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO

from ark_ops.verify.report import NOT_HERE, catalogue_titles
from ark_ops.verify.run import verify
from tests.support.chromium import launched, needs_chromium

SHOT = REPO / "reports" / "compliance-report.png"
# Read-only checks that fail here (DEPLOY_03, parts of DEPLOY_01), one that passes
# (DEPLOY_01's write check: there is no ark user to write anything), disruptive ones that skip
# off the lab (LOG_01's rotation check is its requirement's only one here: a "skip" cell), and
# one placed on HRM's host (MEM_03: not here on either host, a "none" cell).
KEYWORD = ("cannot_write or venv or snapshot_on_request or ports_check "
           "or forced_rotation_under_load")
# Stands in for a secret that reached a command, its output and a failure message: the venv
# checks run `cat -- /opt/ark/wheelhouse/runtime.lock`, which fails here and says so.
SECRET = "wheelhouse/runtime.lock"

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    inv = root / "inventory" / "fixture"
    (inv / ".secrets").mkdir(parents=True)
    (inv / "hosts.yml").write_text(
        "all:\n  vars: {ansible_connection: local, ansible_python_interpreter: /usr/bin/python3}\n"
        "  children:\n    ark:\n      hosts: {ctl-a: {}, ctl-b: {}}\n")
    (inv / ".secrets" / "redis_password").write_text(SECRET + "\n")
    reports, printed = root / "reports", []
    codes = []
    for _ in range(2):  # two runs: the trend has two rows
        codes.append(verify(inventory=str(inv / "hosts.yml"), keyword=KEYWORD,
                            reports_dir=reports, log=printed.append, echo=printed.append))
    return {"reports": reports, "codes": codes, "printed": "".join(map(str, printed)),
            "inventory": inv / "hosts.yml"}


def expected_cells(junit: Path) -> dict[tuple[str, str], str]:
    """(requirement, host) -> fail | pass | skip (not proven) | none, straight from the JUnit
    XML: pass only when every check that applies to the host ran and passed."""
    outcomes: dict[tuple[str, str], list[str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        props = [(p.get("name"), p.get("value")) for p in case.iter("property")]
        host = dict(props)["host"]
        skipped = case.find("skipped")
        state = "fail" if case.find("failure") is not None or case.find("error") is not None \
            else "pass" if skipped is None \
            else "n/a" if skipped.get("message", "").startswith(NOT_HERE) else "skip"
        for name, value in props:
            if name == "requirement":
                outcomes.setdefault((value, host), []).append(state)

    def cell(states: list[str]) -> str:
        applicable = [s for s in states if s != "n/a"]
        return "fail" if "fail" in states else "none" if not applicable \
            else "pass" if all(s == "pass" for s in applicable) else "skip"

    return {k: cell(v) for k, v in outcomes.items()}


@pytest.fixture(scope="module")
def page(run):
    html = (run["reports"] / "compliance-latest.html").resolve()
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    with launched() as browser:
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.goto(html.as_uri())
        pg.screenshot(path=str(SHOT), full_page=True)
        cells = pg.eval_on_selector_all("#matrix td.cell", """tds => tds.map(td => ({
            req: td.dataset.req, host: td.dataset.host, state: td.dataset.state,
            text: td.textContent.trim(), colour: getComputedStyle(td).backgroundColor}))""")
        yield {"page": pg, "cells": cells, "text": pg.inner_text("body"), "html": html}


def test_verify_fails_and_still_writes_every_report(run) -> None:
    assert run["codes"] == [1, 1]  # checks failed: pytest's exit code, passed through
    names = {p.name for p in run["reports"].iterdir()}
    assert {"compliance-latest.html", "compliance-latest.xml", "compliance-latest.md",
            "compliance-history.json"} <= names
    assert len([n for n in names if n.endswith(".html")]) >= 2  # one per run + latest


def test_matrix_cells_match_the_junit(run, page) -> None:
    expected = expected_cells(run["reports"] / "compliance-latest.xml")
    assert {"fail", "pass", "skip", "none"} <= set(expected.values())
    shown = {(c["req"], c["host"]): c["state"] for c in page["cells"]}
    hosts = {h for _, h in expected}
    assert hosts == {"ctl-a", "ctl-b"}
    checked = {r for r, _ in expected}
    for req in catalogue_titles():
        for host in hosts:
            want = expected.get((req, host), "none" if req in checked else "not-covered")
            assert shown[(req, host)] == want, (req, host)


def test_states_have_distinct_colours_and_titles(page) -> None:
    colours = {}
    for c in page["cells"]:
        colours.setdefault(c["state"], set()).add(c["colour"])
    assert all(len(v) == 1 for v in colours.values())
    assert len({next(iter(v)) for v in colours.values()}) == len(colours)
    titles = catalogue_titles()
    row = page["page"].inner_text("#req-DEPLOY_03")
    assert titles["DEPLOY_03"] in row and "FAIL" in row


def test_evidence_inventory_commit_and_trend_are_shown(run, page) -> None:
    pg = page["page"]
    assert pg.locator("pre.evidence").count() > 0
    assert pg.locator("pre.evidence").first.text_content().startswith("$ ")  # in a <details>
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert pg.inner_text("#commit").startswith(commit)
    assert pg.inner_text("#inventory") == str(run["inventory"])
    assert "ctl-a" in pg.inner_text("#inventory-text")
    assert pg.locator("#trend tbody tr").count() == 2


def test_the_secret_is_masked_everywhere(run, page) -> None:
    raw = page["html"].read_text()
    assert SECRET not in raw and SECRET not in page["text"]
    assert "$ cat -- /opt/ark/***" in raw  # the command is shown, with the mask
    # What the plugin runs itself to learn the hosts' secrets is never evidence.
    assert "/etc/ark/env/*.env" not in raw
    assert SECRET not in run["printed"]
    for path in run["reports"].iterdir():
        assert SECRET not in path.read_text(errors="replace"), path.name
