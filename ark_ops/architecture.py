"""DOC_02: docs/architecture.yaml -> Graphviz DOT -> docs/architecture.svg (`invoke docs`).

The YAML is the one source; the DOT text is derived from it here, and the SVG carries the
sha256 of that DOT text in a comment, so a test can tell whether the committed picture was
rendered from the source as it is now without depending on which Graphviz version drew it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from ark_ops.errors import OpsError, PreflightError
from ark_ops.paths import REPO_ROOT

SOURCE = REPO_ROOT / "docs" / "architecture.yaml"
SVG = REPO_ROOT / "docs" / "architecture.svg"
STAMP = "ark-architecture-source-sha256:"
SECTIONS = ("groups", "units", "agents", "streams", "parts", "flows")
# Fill colours by kind of node: the legend is the shape and colour, not text.
STYLE = {
    "unit": 'shape=box, style="rounded,filled", fillcolor="#dbe8f7"',
    "agent": 'shape=ellipse, style=filled, fillcolor="#fde7c4"',
    "stream": 'shape=cds, style=filled, fillcolor="#e3f2dc"',
    "part": 'shape=note, style=filled, fillcolor="#f2f2f2"',
}
EDGE_STYLES = ("solid", "dashed", "dotted")
# The fields each section's entries may have: a typo or a stray key is an error, not ignored.
FIELDS = {"groups": {"label", "parent", "description"},
          "units": {"group", "description", "dropins"},
          "agents": {"description"}, "streams": {"description"},
          "parts": {"group", "description"}, "flows": {"from", "to", "label", "style"}}


class ArchitectureError(OpsError):
    """The source file is malformed; the message names the entry and field."""


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    group: str
    description: str


def load(path: Path = SOURCE) -> dict:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ArchitectureError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ArchitectureError(f"{path}: expected a mapping with {', '.join(SECTIONS)}")
    missing = [s for s in SECTIONS if s not in doc]
    if missing:
        raise ArchitectureError(f"{path}: missing section(s) {', '.join(missing)}")
    for section in SECTIONS:
        entries = doc[section]
        items = enumerate(entries) if isinstance(entries, list) else (entries or {}).items()
        for key, entry in items:
            extra = set(entry or {}) - FIELDS[section] if isinstance(entry, dict | None) \
                else {"(not a mapping)"}
            if extra:
                raise ArchitectureError(f"{path}: {section}[{key!r}]: unknown field(s) "
                                        f"{', '.join(sorted(map(str, extra)))}")
    return doc


def nodes(doc: dict) -> list[Node]:
    """Every drawable thing, with the group it is drawn in."""
    out = []
    for name, unit in doc["units"].items():
        out.append(Node(name, "unit", unit.get("group", "ark"), unit.get("description", "")))
    for name, agent in doc["agents"].items():
        out.append(Node(name, "agent", "ark_agents", (agent or {}).get("description", "")))
    for name, stream in doc["streams"].items():
        out.append(Node(name, "stream", "ark_redis", (stream or {}).get("description", "")))
    for name, part in doc["parts"].items():
        out.append(Node(name, "part", part.get("group", "ark"), part.get("description", "")))
    return out


def _check(doc: dict, all_nodes: list[Node]) -> None:
    groups = doc["groups"]
    names = {n.name for n in all_nodes}
    for n in all_nodes:
        if n.group not in groups:
            raise ArchitectureError(f"{n.kind} {n.name!r}: group {n.group!r} is not in groups")
    for i, flow in enumerate(doc["flows"]):
        for end in ("from", "to"):
            if flow.get(end) not in names:
                raise ArchitectureError(f"flows[{i}].{end}: {flow.get(end)!r} is not a unit, "
                                        "agent, stream or part")
        if flow.get("style", "solid") not in EDGE_STYLES:
            raise ArchitectureError(f"flows[{i}].style: {flow['style']!r} is not one of "
                                    f"{', '.join(EDGE_STYLES)}")


def _q(text: str) -> str:
    """A DOT string. Backslashes stay: labels use DOT's own `\\n` line breaks."""
    return '"' + str(text).replace('"', '\\"') + '"'


def _cluster(group: str, doc: dict, by_group: dict[str, list[Node]], indent: str) -> list[str]:
    spec = doc["groups"][group]
    lines = [f"{indent}subgraph {_q('cluster_' + group)} {{",
             f"{indent}  label={_q(spec.get('label', group))}; style=rounded; color=gray40;"]
    for n in by_group.get(group, []):
        label = n.name if not n.description else f"{n.name}\\n{n.description}"
        dropins = doc["units"].get(n.name, {}).get("dropins", []) if n.kind == "unit" else []
        if dropins:
            label += "\\n+ " + ", ".join(dropins)
        lines.append(f"{indent}  {_q(n.name)} [label={_q(label)}, "
                     f"{STYLE[n.kind]}];")
    for child, child_spec in doc["groups"].items():
        if child_spec.get("parent") == group:
            lines += _cluster(child, doc, by_group, indent + "  ")
    lines.append(f"{indent}}}")
    return lines


def to_dot(doc: dict) -> str:
    all_nodes = nodes(doc)
    _check(doc, all_nodes)
    by_group: dict[str, list[Node]] = {}
    for n in all_nodes:
        by_group.setdefault(n.group, []).append(n)
    lines = ["digraph ark {", '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, '
             'label="ARK: hosts, units, agents, streams and data flows '
             '(generated from docs/architecture.yaml)", labelloc=t];',
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9, color=gray30];']
    for group, spec in doc["groups"].items():
        if not spec.get("parent"):
            lines += _cluster(group, doc, by_group, "  ")
    for flow in doc["flows"]:
        lines.append(f"  {_q(flow['from'])} -> {_q(flow['to'])} [label={_q(flow.get('label', ''))}"
                     f", style={flow.get('style', 'solid')}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def stamp_of(dot: str) -> str:
    return hashlib.sha256(dot.encode()).hexdigest()


def stamped(svg: str, dot: str) -> str:
    """The SVG with the DOT text's hash in a comment after the XML declaration."""
    comment = f"<!-- {STAMP} {stamp_of(dot)} -->"
    head, sep, rest = svg.partition("?>")
    return f"{head}{sep}\n{comment}{rest}" if sep else f"{comment}\n{svg}"


def render(source: Path = SOURCE, out: Path = SVG) -> Path:
    """Render the source to SVG with Graphviz's dot; raise a one-sentence error without it."""
    dot_bin = shutil.which("dot")
    if dot_bin is None:
        raise PreflightError("graphviz `dot` is missing: ./ops installs it "
                             "(apt-get install graphviz)")
    dot = to_dot(load(source))
    proc = subprocess.run([dot_bin, "-Tsvg"], input=dot, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise ArchitectureError(f"dot refused the generated graph: {proc.stderr.strip()}")
    out.write_text(stamped(proc.stdout, dot))
    return out
