"""DOC_03: docs/OPS_HANDBOOK.md has a complete runbook for everything ARK can raise.

The list is read from the code and the rules, never typed here: the alert rules file, the
ExitCode enum, the findings `ark heal` can add (read from its modules' source), and the
error bus's severities. Only the four operator procedures the issue names are fixed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from doc_commands import problems_in

from ark_runtime.bus.registry import SEVERITIES
from ark_runtime.exitcodes import ExitCode

REPO = Path(__file__).resolve().parents[2]
HANDBOOK = REPO / "docs" / "OPS_HANDBOOK.md"
RULES = REPO / "roles" / "ark_monitoring" / "files" / "ark_alerts.yml"
HEAL = REPO / "ark_runtime" / "host" / "heal"
PARTS = ("**What it means.**", "**Confirm.**", "**What to do.**", "**Verify it is fixed.**")
PROCEDURES = ("panic-and-recover", "dr-drill", "config-rollback",
              "audit-chain-verification-failure")


def slug(heading: str) -> str:
    """The anchor a heading gets (the rule test_alert_rules.py and GitHub agree on for
    headings without underscores)."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def sections(markdown: str) -> dict[str, str]:
    """anchor -> the text under that heading, up to the next heading."""
    out: dict[str, str] = {}
    parts = re.split(r"^(#{1,6})\s+(.*)$", markdown, flags=re.M)
    for i in range(1, len(parts) - 2, 3):
        out[slug(parts[i + 1])] = parts[i + 2]
    return out


def alert_anchors() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["annotations"]["runbook"].split("#", 1)[1]: r["alert"]
            for g in doc["groups"] for r in g["rules"] if "alert" in r}


def exit_code_anchors() -> dict[str, str]:
    return {f"exit-{c.value}-{c.name.lower()}": f"exit code {c.value}" for c in ExitCode}


def severity_anchors() -> dict[str, str]:
    return {f"error-severity-{s}": f"severity {s}" for s in SEVERITIES}


def heal_modules() -> list[Path]:
    """The heal run and every check module of its package."""
    return sorted(HEAL.glob("*.py"))


def heal_findings() -> dict[str, set[str]]:
    """check -> the statuses the code can report for it: `h.add(check, target, status, ...)`
    and `h.fix(check, ...)` (which reports repaired, or would_repair in a dry run)."""
    found: dict[str, set[str]] = {}
    for path in heal_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in ("h", "self") and node.args
                    and isinstance(node.args[0], ast.Constant)):
                continue
            check = node.args[0].value
            if node.func.attr == "fix":
                found.setdefault(check, set()).update({"repaired", "would_repair"})
            elif node.func.attr == "add" and len(node.args) >= 3 \
                    and isinstance(node.args[2], ast.Constant):
                found.setdefault(check, set()).add(node.args[2].value)
    return found


def heal_anchors() -> dict[str, str]:
    return {f"heal-finding-{c.replace('_', '-')}": f"heal check {c}" for c in heal_findings()}


def required() -> dict[str, str]:
    return {**alert_anchors(), **exit_code_anchors(), **severity_anchors(), **heal_anchors(),
            **{p: p for p in PROCEDURES}}


def missing_runbooks(markdown: str) -> list[str]:
    """What has no section, or a section without one of the four parts."""
    have = sections(markdown)
    problems = []
    for anchor, what in sorted(required().items()):
        if anchor not in have:
            problems.append(f"{what}: no section #{anchor}")
            continue
        problems += [f"{what}: #{anchor} lacks {p}" for p in PARTS if p not in have[anchor]]
    return problems


@pytest.mark.requirement("DOC_03")
def test_every_alert_exit_code_heal_finding_severity_and_procedure_has_a_runbook() -> None:
    assert missing_runbooks(HANDBOOK.read_text()) == []


@pytest.mark.requirement("DOC_03")
def test_the_enumeration_comes_from_the_code() -> None:
    findings = heal_findings()
    # What heal.py's own docstring lists as its checks, each with a failing outcome or a repair.
    assert {"panic", "dirs", "config", "venv", "store", "boot_state", "snapshot_key"} <= set(
        findings)
    assert "failed" in findings["venv"] and "repaired" in findings["store"]
    assert len(alert_anchors()) == len([1 for g in yaml.safe_load(RULES.read_text())["groups"]
                                        for r in g["rules"] if "alert" in r])
    assert "exit-78-config" in exit_code_anchors()


@pytest.mark.requirement("DOC_03")
def test_each_heal_section_names_every_status_its_check_reports() -> None:
    have = sections(HANDBOOK.read_text())
    gaps = [(check, status) for check, statuses in heal_findings().items() for status in statuses
            if f"`{status}`" not in have.get(f"heal-finding-{check.replace('_', '-')}", "")
            and status != "ok"]
    assert gaps == []


@pytest.mark.requirement("DOC_03")
def test_a_missing_or_incomplete_section_is_caught() -> None:
    text = HANDBOOK.read_text()
    without_store = re.sub(r"^### Heal finding: store$", "### Heal finding: shop", text,
                           flags=re.M)
    assert any("heal check store" in p for p in missing_runbooks(without_store))
    no_verify = text.replace("**Verify it is fixed.** `ark errors status` exits 0",
                             "`ark errors status` exits 0")
    assert missing_runbooks(no_verify) == [
        "severity critical: #error-severity-critical lacks **Verify it is fixed.**"]


@pytest.mark.requirement("DOC_03")
def test_every_command_the_handbook_names_exists() -> None:
    commands, problems = problems_in(HANDBOOK.read_text())
    assert problems == []
    named = {c.program for c in commands}
    assert named == {"invoke", "ark"} and len(commands) > 40


def test_a_wrong_command_in_a_document_is_caught() -> None:
    _, problems = problems_in("```sh\ninvoke deploy --bogus\nark heal --nope\n"
                              "invoke no-such-task\nark snapshot undo\n```\n"
                              "and `invoke lab.up --hosts 2` is fine\n")
    assert len(problems) == 4, problems


# A metric name in the text (not a group such as ark_agents, not a regex like ark_x_(a|b)).
METRIC = re.compile(r"\bark_(?:agent_|unit_|stream_|redis_up|breaker_|panic|snapshot_|heal_last|"
                    r"filesystem_|host_|tree_|decisions|collector_|build_)(?:[a-z_]*[a-z])?(?![\w(])")


def exporter_metric_names() -> set[str]:
    """Every metric family the exporter declares (string constants in ark_runtime/metrics)."""
    names = set()
    for path in (REPO / "ark_runtime" / "metrics").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and re.fullmatch(r"ark_[a-z_]+", node.value):
                names.add(node.value)
    return names


@pytest.mark.requirement("DOC_03")
def test_every_metric_the_handbook_names_is_exported() -> None:
    exported = exporter_metric_names()
    named = set(METRIC.findall(HANDBOOK.read_text()))
    assert len(named) > 10
    # prometheus_client adds _total to a counter's family name.
    assert sorted(m for m in named if m not in exported and m.removesuffix("_total")
                  not in exported) == []
