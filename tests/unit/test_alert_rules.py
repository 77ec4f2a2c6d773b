"""LOG_03: the alert rules pass promtool and their unit tests; each names its runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "roles" / "ark_monitoring" / "files" / "ark_alerts.yml"
RULE_TESTS = REPO / "tests" / "promtool" / "ark_alerts_test.yml"
HANDBOOK = REPO / "docs" / "OPS_HANDBOOK.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is missing: ./ops installs Debian's prometheus package")

# What the issue asks alerts for -> the alert that covers it.
REQUIRED = {"agent down": "ArkAgentDown", "heartbeat stale": "ArkHeartbeatStale",
            "backlog growing": "ArkBacklogGrowing", "dead letters growing": "ArkDeadLettersGrowing",
            "disk filling": "ArkDiskFilling", "breaker tripped": "ArkBreakerTripped",
            "panic active": "ArkPanicActive", "snapshot too old": "ArkSnapshotTooOld",
            "heal failed": "ArkHealFailed", "redis down": "ArkRedisDown",
            "redis memory high": "ArkRedisMemoryHigh",
            "redis refusing writes": "ArkRedisRefusingWrites"}


def alerts() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


@pytest.mark.requirement("LOG_03")
def test_every_required_alert_exists_with_a_runbook_section() -> None:
    by_name = {a["alert"]: a for a in alerts()}
    assert set(REQUIRED.values()) <= set(by_name)
    anchors = []
    for alert in by_name.values():
        runbook = alert["annotations"].get("runbook", "")
        assert re.fullmatch(r"docs/OPS_HANDBOOK\.md#[a-z0-9-]+", runbook), alert["alert"]
        assert alert["labels"]["severity"] in ("warning", "critical")
        anchors.append(runbook.split("#")[1])
    assert len(anchors) == len(set(anchors)), "two alerts share a runbook section"


@pytest.mark.requirement("LOG_03")
def test_runbook_sections_exist_in_the_handbook() -> None:
    if not HANDBOOK.exists():
        pytest.skip("docs/OPS_HANDBOOK.md is written by the docs issue (DOC_03)")
    text = HANDBOOK.read_text().lower()
    headings = {re.sub(r"[^a-z0-9 -]", "", h.strip()).replace(" ", "-")
                for h in re.findall(r"^#+\s+(.*)$", text, re.M)}
    missing = [a["annotations"]["runbook"] for a in alerts()
               if a["annotations"]["runbook"].split("#")[1] not in headings]
    assert not missing, f"no handbook section for {missing}"


@needs_promtool
@pytest.mark.requirement("LOG_03")
def test_promtool_checks_the_rules() -> None:
    proc = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
@pytest.mark.requirement("LOG_03")
def test_promtool_rule_unit_tests_pass() -> None:
    proc = subprocess.run([PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True,
                          text=True, cwd=RULE_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
@pytest.mark.requirement("LOG_03")
def test_every_alert_is_exercised_by_a_promtool_test() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    tested = {t["alertname"] for case in doc["tests"] for t in case["alert_rule_test"]
              if t.get("exp_alerts")}
    assert {a["alert"] for a in alerts()} <= tested


@needs_promtool
def test_a_broken_rule_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(RULES.read_text().replace("ark_panic == 1", "ark_panic ==", 1))
    proc = subprocess.run([PROMTOOL, "check", "rules", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
