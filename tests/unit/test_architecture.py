"""DOC_02: docs/architecture.yaml matches the code, and the committed SVG matches the source.

What the source must name is read from the code: the agent table, the stream names the bus
uses, the unit templates on disk, the inventory groups the lab generates and the example
inventory uses, and the message types of the registry (each must label a data flow).
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ark_ops import architecture
from ark_ops.architecture import ArchitectureError
from ark_ops.lab.config import LabHost, LabPaths
from ark_ops.lab.inventory import render as render_lab_inventory
from ark_runtime.agents import AGENTS
from ark_runtime.bus.registry import PIPELINE, REGISTRY
from ark_runtime.bus.streams import SIDE_STREAMS, inbox

REPO = Path(__file__).resolve().parents[2]
ROLE_TEMPLATES = REPO / "roles" / "ark_runtime" / "templates"
TEMPLATES = ROLE_TEMPLATES / "systemd"
EXAMPLE = REPO / "inventory" / "example" / "hosts.yml"


def stamp_in(svg: str) -> str | None:
    """The DOT hash `invoke docs` stamped into the SVG (architecture.stamped), or None."""
    for line in svg.splitlines():
        if architecture.STAMP in line:
            return line.split(architecture.STAMP, 1)[1].strip(" ->")
    return None


def source() -> dict:
    return architecture.load()


def groups_in(tree: dict) -> set[str]:
    """Every group name under `children`, at any depth, of an Ansible YAML inventory."""
    found: set[str] = set()
    for name, body in (tree.get("children") or {}).items():
        found |= {name} | groups_in(body or {})
    return found


def code_streams() -> set[str]:
    """The inbox of every agent that consumes a registered message type, and the side
    streams (dead letters, errors, decisions)."""
    consumers = {c for mt in REGISTRY.values() for c in mt.consumers if c in PIPELINE}
    return {inbox(c) for c in consumers} | set(SIDE_STREAMS)


def code_units() -> set[str]:
    """Every unit or drop-in template (partials start with `_`)."""
    return {p.name.removesuffix(".j2") for p in TEMPLATES.glob("*.j2")
            if not p.name.startswith("_")}


def code_groups() -> set[str]:
    lab = render_lab_inventory(LabPaths.default(), [LabHost.parse("1"), LabHost.parse("2")])
    return groups_in(lab["all"]) | groups_in(yaml.safe_load(EXAMPLE.read_text())["all"])


@pytest.mark.requirement("DOC_02")
def test_agents_match_the_agent_table() -> None:
    assert set(source()["agents"]) == set(AGENTS) == set(PIPELINE)


@pytest.mark.requirement("DOC_02")
def test_streams_match_the_bus() -> None:
    assert set(source()["streams"]) == code_streams()


@pytest.mark.requirement("DOC_02")
def test_units_match_the_templates() -> None:
    doc = source()
    drawn = set(doc["units"]) | {d for u in doc["units"].values() for d in u.get("dropins", [])}
    assert drawn == code_units()


@pytest.mark.requirement("DOC_02")
def test_groups_match_the_inventories() -> None:
    assert set(source()["groups"]) - {"control"} == code_groups()


@pytest.mark.requirement("DOC_02")
def test_every_message_type_labels_a_data_flow() -> None:
    labels = " ".join(f.get("label", "") for f in source()["flows"])
    missing = [name for name in REGISTRY if not re.search(rf"\b{re.escape(name)}\b", labels)]
    assert missing == []


@pytest.mark.requirement("DOC_02")
def test_the_committed_svg_was_rendered_from_the_source_as_it_is() -> None:
    svg = architecture.SVG.read_text()
    assert stamp_in(svg) == architecture.stamp_of(architecture.to_dot(source())), \
        "docs/architecture.svg is stale: run `invoke docs` and commit it"
    assert "<svg" in svg and "ark:stream:decisions" in svg


@pytest.mark.requirement("DOC_02")
def test_the_readme_shows_the_picture() -> None:
    assert "](docs/architecture.svg)" in (REPO / "README.md").read_text()


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is missing (./ops installs it)")
@pytest.mark.requirement("DOC_02")
def test_render_draws_every_node_and_stamps_it(tmp_path: Path) -> None:
    out = architecture.render(out=tmp_path / "a.svg")
    svg = html.unescape(out.read_text())  # dot writes "-" as &#45;
    doc = source()
    for name in [*doc["agents"], *doc["streams"], *doc["units"], *doc["parts"]]:
        assert f"<title>{name}</title>" in svg, name
    assert stamp_in(svg) == stamp_in(architecture.SVG.read_text())


def test_a_changed_source_no_longer_matches_the_stamp(tmp_path: Path) -> None:
    doc = source()
    doc["agents"]["zoe"] = {"description": "not an agent"}
    assert architecture.stamp_of(architecture.to_dot(doc)) != \
        stamp_in(architecture.SVG.read_text())


def test_a_flow_to_something_undeclared_is_named(tmp_path: Path) -> None:
    doc = source()
    doc["flows"].append({"from": "kyle", "to": "ark:stream:gone"})
    with pytest.raises(ArchitectureError, match=r"flows\[\d+\]\.to: 'ark:stream:gone'"):
        architecture.to_dot(doc)


@settings(max_examples=60, deadline=None)
@given(section=st.sampled_from(sorted(architecture.FIELDS)),
       field=st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1,
                     max_size=12))
def test_an_unknown_field_is_refused_naming_it(tmp_path_factory, section: str,
                                               field: str) -> None:
    if field in architecture.FIELDS[section]:
        return
    doc = source()
    entries = doc[section]
    first = entries[0] if isinstance(entries, list) else next(iter(entries.values()))
    first[field] = "x"
    path = tmp_path_factory.mktemp("arch") / "architecture.yaml"
    text = yaml.safe_dump(doc, sort_keys=False)
    path.write_text(text)
    with pytest.raises(ArchitectureError, match=rf"{section}\[.*unknown field\(s\) {field}"):
        architecture.load(path)
    assert path.read_text() == text  # the file is only read, never changed
