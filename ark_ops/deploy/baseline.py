"""The per-host normalization report of a deploy (DEPLOY_01): found / changed / refused.

The ark_baseline role writes one JSON file per host into reports/baseline/ (a refused host's
too, before the play stops on it); `invoke deploy` clears that directory first and renders
the files it finds afterwards, however the playbook ended.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ark_ops.errors import OpsError

# What the role writes; anything else in a findings file is a bug worth naming.
STATUSES = ("ok", "changed", "would change", "warn", "refused")


@dataclass(frozen=True)
class Finding:
    check: str
    found: str
    status: str
    note: str = ""


def parse_findings(name: str, doc: object) -> list[Finding]:
    """One host's findings; ValueError names the file and the field that is wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("checks"), dict):
        raise ValueError(f"{name}: field 'checks' must be an object of check -> finding")
    findings = []
    for check, entry in doc["checks"].items():
        if not isinstance(entry, dict):
            raise ValueError(f"{name}: checks.{check} must be an object")
        for field in ("found", "status"):
            if not isinstance(entry.get(field), str):
                raise ValueError(f"{name}: checks.{check}.{field} must be a string")
        if entry["status"] not in STATUSES:
            raise ValueError(f"{name}: checks.{check}.status is {entry['status']!r}, "
                             f"not one of {', '.join(STATUSES)}")
        note = entry.get("note", "")
        findings.append(Finding(str(check), entry["found"], entry["status"],
                                note if isinstance(note, str) else str(note)))
    return findings


def load(directory: Path) -> dict[str, list[Finding]]:
    """host -> findings, from every <host>.json the role wrote."""
    hosts = {}
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise OpsError(f"baseline report: {path.name} is not readable JSON ({exc})") from None
        try:
            hosts[path.stem] = parse_findings(path.name, doc)
        except ValueError as exc:
            raise OpsError(f"baseline report: {exc}") from None
    return hosts


def clear(directory: Path) -> None:
    """Before a deploy: a host left out by --limit must not show last run's findings."""
    for path in directory.glob("*.json"):
        path.unlink()


def _one_line(text: str) -> str:
    return " ".join(text.split())  # any line break (\r, \u2028 ...) would end a table row


def _cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


def render_markdown(hosts: dict[str, list[Finding]]) -> str:
    lines = ["# Host baseline (DEPLOY_01)", ""]
    if not hosts:
        return "\n".join(lines + ["No host reached the baseline checks.", ""])
    lines += [f"- {line}" for line in summary(hosts)] + [""]
    lines += ["| Host | Check | Found | Result | Note |", "|---|---|---|---|---|"]
    for host, findings in sorted(hosts.items()):
        for f in findings:
            lines.append(f"| {_cell(host)} | {_cell(f.check)} | {_cell(f.found)} | "
                         f"{f.status} | {_cell(f.note)} |")
    return "\n".join(lines) + "\n"


def summary(hosts: dict[str, list[Finding]]) -> list[str]:
    """One line per host: how many checks were ok, changed, warned or refused."""
    out = []
    for host, findings in sorted(hosts.items()):
        counts = Counter(f.status for f in findings)
        parts = [f"{counts[s]} {s}" for s in STATUSES if counts[s]]
        changed = [f.check for f in findings if f.status in ("changed", "would change")]
        refused = [f.check for f in findings if f.status == "refused"]
        tail = "".join(f"; {label}: {_one_line(', '.join(names))}" for label, names in
                       (("changed", changed), ("refused", refused)) if names)
        out.append(f"{host}: {', '.join(parts) or 'no checks'}{tail}")
    return out


def write(directory: Path, out: Path) -> dict[str, list[Finding]]:
    """Render the findings in `directory` to the Markdown file `out`; return them."""
    hosts = load(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(hosts))
    return hosts
