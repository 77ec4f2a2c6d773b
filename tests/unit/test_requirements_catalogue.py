"""docs/requirements.yaml: one hop from a requirement id to its code, role tasks and tests.

Everything the catalogue names must exist, everything that carries an id must be in it,
and each status must follow the rule written in the catalogue's header.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "docs" / "requirements.yaml"

# The 34 ids of the design brief's catalogue (seed/REQUIREMENTS_STATUS.txt).
IDS = {
    "INFRA_01", "INFRA_02", "INFRA_03", "INFRA_04", "MEM_01", "MEM_02", "MEM_03",
    "AGENT_01", "AGENT_02", "AGENT_03", "AGENT_04", "SEC_01", "SEC_02", "SEC_03",
    "LOG_01", "LOG_02", "LOG_03", "DEPLOY_01", "DEPLOY_02", "DEPLOY_03",
    "UI_01", "UI_02", "UI_03", "REC_01", "REC_02", "REC_03",
    "TEST_01", "TEST_02", "TEST_03", "DOC_01", "DOC_02", "DOC_03", "GOV_01", "GOV_02",
}
STATUSES = {"done", "partial", "not built"}
PROOF_KINDS = {"host": {"compliance"}, "lab": {"e2e"}, "code": {"unit", "integration"}}
TEST_KINDS = {"unit", "integration", "e2e", "compliance"}
TASK_ID = re.compile(r"^([A-Z]+_\d\d) \| ")


@cache
def catalogue() -> dict[str, dict]:
    return yaml.safe_load(CATALOGUE.read_text())["requirements"]


def entries():
    return sorted(catalogue().items())


def listed_tests(entry: dict) -> dict[str, list[str]]:
    return entry.get("tests") or {}


def marker_ids(node: ast.AST) -> list[str]:
    return [arg.value for call in ast.walk(node) if isinstance(call, ast.Call)
            and getattr(call.func, "attr", None) == "requirement"
            for arg in call.args if isinstance(arg, ast.Constant)]


@cache
def markers_in_tests() -> set[tuple[str, str, str | None]]:
    """(id, test file, function or None for a module-wide pytestmark) for every marker."""
    found: set[tuple[str, str, str | None]] = set()
    for path in sorted((ROOT / "tests").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                    getattr(t, "id", None) == "pytestmark" for t in node.targets):
                found |= {(i, rel, None) for i in marker_ids(node.value)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                for deco in node.decorator_list:
                    found |= {(i, rel, node.name) for i in marker_ids(deco)}
    return found


def _task_names(node) -> list[str]:
    names: list[str] = []
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                names.append(item["name"])
            names += _task_names(item)
    elif isinstance(node, dict):
        for value in node.values():
            names += _task_names(value)
    return names


@cache
def role_task_names() -> set[str]:
    names: set[str] = set()
    for folder in ("roles", "playbooks"):
        for path in (ROOT / folder).rglob("*.yml"):
            names |= set(_task_names(yaml.safe_load(path.read_text())))
    return names


def defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_all_34_ids_and_nothing_else():
    assert set(catalogue()) == IDS


@pytest.mark.parametrize("rid,entry", entries(), ids=[i for i, _ in entries()])
def test_entry_is_complete(rid, entry):
    for field in ("title", "done_means", "proof", "status", "code", "role_tasks", "tests"):
        assert field in entry, f"{rid}: no {field!r}"
    assert entry["status"] in STATUSES, f"{rid}: status {entry['status']!r}"
    assert entry["proof"] in PROOF_KINDS, f"{rid}: proof {entry['proof']!r}"
    assert set(listed_tests(entry)) <= TEST_KINDS, f"{rid}: test kinds {set(entry['tests'])}"


@pytest.mark.parametrize("rid,entry", entries(), ids=[i for i, _ in entries()])
def test_every_named_path_and_test_exists(rid, entry):
    for path in entry["code"]:
        assert (ROOT / path).exists(), f"{rid}: code path {path} does not exist"
    for kind, tests in listed_tests(entry).items():
        for test in tests:
            path, _, name = test.partition("::")
            assert path.startswith(f"tests/{kind}/"), f"{rid}: {test} is not a {kind} test"
            assert (ROOT / path).is_file(), f"{rid}: test file {path} does not exist"
            if name:
                assert name in defined_names(ROOT / path), f"{rid}: {test} does not exist"


@pytest.mark.parametrize("rid,entry", entries(), ids=[i for i, _ in entries()])
def test_every_named_role_task_exists(rid, entry):
    for name in entry["role_tasks"]:
        assert name.startswith(f"{rid} | "), f"{rid}: task {name!r} carries another id"
        assert name in role_task_names(), f"{rid}: no task named {name!r} in roles/ or playbooks/"


def test_every_id_in_a_marker_is_catalogued_with_its_test():
    for rid, path, func in sorted(markers_in_tests(), key=str):
        assert rid in catalogue(), f"{path}: marker id {rid} is not in docs/requirements.yaml"
        listed = {t for tests in listed_tests(catalogue()[rid]).values() for t in tests}
        covers = path in listed or (func is not None and f"{path}::{func}" in listed)
        assert covers, f"{rid}: {path}{'::' + func if func else ''} carries the id but is " \
                       "not listed under it in docs/requirements.yaml"


def test_every_id_in_a_task_name_is_catalogued_with_the_task():
    for name in sorted(role_task_names()):
        match = TASK_ID.match(name)
        if match is None:
            continue
        rid = match.group(1)
        assert rid in catalogue(), f"task {name!r}: {rid} is not in docs/requirements.yaml"
        assert name in catalogue()[rid]["role_tasks"], f"task {name!r} is not listed under {rid}"


@pytest.mark.parametrize("rid,entry", entries(), ids=[i for i, _ in entries()])
def test_status_follows_the_rule(rid, entry):
    tests = listed_tests(entry)
    kinds_with_tests = {kind for kind, names in tests.items() if names}
    if entry["status"] == "done":
        needed = PROOF_KINDS[entry["proof"]]
        assert kinds_with_tests & needed, \
            f"{rid} is done but has no {' or '.join(sorted(needed))} test (proof: {entry['proof']})"
        assert not entry.get("open"), f"{rid} is done but lists open work: {entry['open']}"
    elif entry["status"] == "partial":
        assert entry["code"], f"{rid} is partial but names no code"
        assert entry.get("open"), f"{rid} is partial: say what is missing under 'open'"
    else:
        assert not entry["code"], f"{rid} is not built but names code"
        assert not kinds_with_tests, f"{rid} is not built but names tests: {tests}"
        assert not any(m[0] == rid for m in markers_in_tests()), \
            f"{rid} is not built but a test carries its marker"


def test_the_checker_sees_markers_and_task_names():
    # Guards the checks above against passing vacuously (a parser that finds nothing).
    ids_seen = {m[0] for m in markers_in_tests()}
    assert {"INFRA_01", "SEC_01", "DEPLOY_03"} <= ids_seen
    assert any(TASK_ID.match(n) for n in role_task_names())
