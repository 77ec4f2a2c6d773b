"""The compliance report people look at: one self-contained HTML page per `invoke verify`.

Built from the run's JUnit XML (written by pytest with the ark_ops.verify.report plugin, so each
check carries `requirement`, `host` and `evidence` properties): a requirement × host matrix
with the catalogue's titles, pass / fail / skip / not-covered colours, every check with its
evidence (commands and their output), the inventory and git commit it ran against, and a
trend over the last runs kept in reports/compliance-history.json. Every text that reaches the
page passes through the run's Redactor first, and the finished page once more.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ark_ops.redact import Redactor
from ark_ops.verify.report import UNTAGGED, catalogue_titles

TEMPLATES = Path(__file__).resolve().parent / "templates"
HISTORY_KEEP = 30  # runs kept in the history file
TREND_SHOWN = 12  # runs drawn in the trend
# Cell states, worst first: a requirement's cell on a host is the worst of its checks.
FAIL, SKIP, PASS, NONE, NOT_COVERED = "fail", "skip", "pass", "none", "not-covered"


@dataclass
class Check:
    nodeid: str
    host: str
    requirements: list[str]
    outcome: str  # passed | failed | error | skipped
    duration: float = 0.0
    message: str = ""
    details: str = ""
    evidence: list[str] = field(default_factory=list)
    output: str = ""


@dataclass
class Row:
    requirement: str
    title: str
    cells: list[str]


def _outcome(case: ET.Element) -> tuple[str, str, str]:
    for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        node = case.find(tag)
        if node is not None:
            return outcome, node.get("message", ""), node.text or ""
    return "passed", "", ""


def parse_junit(path: Path) -> list[Check]:
    """Every test case of a JUnit file, with the properties the report plugin set."""
    checks = []
    for case in ET.parse(path).getroot().iter("testcase"):
        props = [(p.get("name", ""), p.get("value", "")) for p in case.iter("property")]
        outcome, message, details = _outcome(case)
        module = case.get("classname", "").replace(".", "/")
        output = "\n".join(n.text or "" for tag in ("system-out", "system-err")
                           for n in case.findall(tag)).strip()
        checks.append(Check(
            nodeid=f"{module}.py::{case.get('name', '')}" if module else case.get("name", ""),
            host=next((v for k, v in props if k == "host"), "local"),
            requirements=sorted({v for k, v in props if k == "requirement"}) or [UNTAGGED],
            outcome=outcome, duration=float(case.get("time") or 0), message=message,
            details=details, evidence=[v for k, v in props if k == "evidence"], output=output))
    return checks


def cell(outcomes: list[str]) -> str:
    if not outcomes:
        return NONE
    if any(o in ("failed", "error") for o in outcomes):
        return FAIL
    if all(o == "skipped" for o in outcomes):
        return SKIP
    return PASS


def matrix(checks: list[Check], titles: dict[str, str]) -> tuple[list[str], list[Row]]:
    """Hosts, and one row per requirement of the catalogue (and any other id a check
    carries): its cell on each host, or not-covered on every host when nothing checks it."""
    hosts = sorted({c.host for c in checks}) or ["(no host)"]
    by_cell: dict[tuple[str, str], list[str]] = {}
    for c in checks:
        for req in c.requirements:
            by_cell.setdefault((req, c.host), []).append(c.outcome)
    checked = {req for req, _ in by_cell}
    rows = []
    for req in sorted(checked | set(titles)):
        title = titles.get(req) or ("checks without a requirement marker" if req == UNTAGGED
                                    else "(not in docs/requirements.yaml)")
        cells = [cell(by_cell.get((req, h), [])) for h in hosts] if req in checked \
            else [NOT_COVERED] * len(hosts)
        rows.append(Row(req, title, cells))
    return hosts, rows


def summary(rows: list[Row]) -> dict[str, int]:
    """Requirements by overall state (the worst cell across hosts)."""
    order = (FAIL, SKIP, PASS, NONE, NOT_COVERED)
    counts = Counter(next(s for s in order if s in r.cells) for r in rows)
    return {s: counts.get(s, 0) for s in order}


def git_commit(repo: Path) -> str:
    """Short commit of the checkout the run used, `-dirty` when it has local changes."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=False)

    head = git("rev-parse", "--short=12", "HEAD")
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def update_history(path: Path, entry: dict) -> list[dict]:
    """Append this run to the history file (newest last, HISTORY_KEEP kept); an unreadable
    history is set aside rather than lost, and a new one started."""
    runs: list[dict] = []
    if path.exists():
        try:
            runs = json.loads(path.read_text())
            if not isinstance(runs, list):
                raise ValueError("not a list")
        except ValueError:
            path.replace(path.with_suffix(".unreadable.json"))
            runs = []
    runs = [*runs, entry][-HISTORY_KEEP:]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(runs, indent=1) + "\n")
    tmp.replace(path)
    return runs


def _redacted(checks: list[Check], redact: Redactor) -> list[Check]:
    return [Check(redact(c.nodeid), redact(c.host), [redact(r) for r in c.requirements],
                  c.outcome, c.duration, redact(c.message), redact(c.details),
                  [redact(e) for e in c.evidence], redact(c.output)) for c in checks]


def render(checks: list[Check], *, titles: dict[str, str], inventory: str, inventory_text: str,
           commit: str, generated: str, history: list[dict], redact: Redactor) -> str:
    """The page as a string (no file touched): everything it shows is redacted first."""
    checks = _redacted(checks, redact)
    hosts, rows = matrix(checks, titles)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    page = env.get_template("compliance.html.j2").render(
        hosts=hosts, rows=rows, summary=summary(rows), checks=checks,
        inventory=redact(inventory), inventory_text=redact(inventory_text),
        commit=redact(commit), generated=generated, trend=history[-TREND_SHOWN:])
    return redact(page)


def write_report(junit: Path, out: Path, *, inventory: Path, history_path: Path, repo: Path,
                 generated: str, redact: Redactor, titles: dict[str, str] | None = None) -> Path:
    """Parse the run's JUnit, add the run to the history, write the page to `out`."""
    checks = parse_junit(junit)
    titles = catalogue_titles() if titles is None else titles
    commit = git_commit(repo)
    inv_file = inventory / "hosts.yml" if inventory.is_dir() else inventory
    try:
        inventory_text = inv_file.read_text()
    except OSError as exc:
        inventory_text = f"(cannot read {inv_file}: {exc.strerror})"
    hosts, rows = matrix(checks, titles)
    history = update_history(history_path, {
        "generated": generated, "commit": commit, "inventory": redact(str(inventory)),
        "hosts": [redact(h) for h in hosts], "requirements": summary(rows),
        "checks": dict(Counter(c.outcome for c in checks)), "report": out.name})
    out.write_text(render(checks, titles=titles, inventory=str(inventory),
                          inventory_text=inventory_text, commit=commit, generated=generated,
                          history=history, redact=redact))
    return out

