"""Issue #17: the pipeline is declared once (ark_runtime/pipeline.py); every other list of
agents derives from it, and no other product file writes the list out again."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import jinja2
import pytest
import yaml

from ark_runtime import pipeline

REPO = Path(__file__).resolve().parents[2]
DECLARATION = "ark_runtime/pipeline.py"
# What ships or deploys: both packages, the task surface, the role side, compose.
PRODUCT = ("ark_runtime", "ark_ops", "plugins", "roles", "playbooks", "compose")
PRODUCT_FILES = ("tasks.py", "docker-compose.yml", "Dockerfile")
# Files generated from the declaration (their staleness tests keep them in line).
GENERATED = {"ark_runtime/env.schema.yaml"}
# A list naming this many agents is a copy of the pipeline, not a reference to one agent.
SEVERAL = 3


def _product_files() -> list[Path]:
    files = [REPO / f for f in PRODUCT_FILES if (REPO / f).is_file()]
    for top in PRODUCT:
        files += [p for p in (REPO / top).rglob("*")
                  if p.suffix in {".py", ".yml", ".yaml", ".j2", ".sh", ".env"} and p.is_file()]
    return sorted(p for p in files if p.relative_to(REPO).as_posix() not in GENERATED)


def _names_in(node: ast.AST) -> set[str]:
    """Agent names a collection literal holds directly, or as its calls' first argument
    (the declaration's `Agent("kyle", ...)` entries)."""
    found = set()
    for elt in getattr(node, "elts", None) or getattr(node, "keys", None) or []:
        if isinstance(elt, ast.Call) and elt.args:
            elt = elt.args[0]
        if isinstance(elt, ast.Constant) and elt.value in pipeline.NAMES:
            found.add(elt.value)
    return found


def _python_lists(text: str) -> int:
    tree = ast.parse(text)
    hits = 0
    for node in ast.walk(tree):
        # Literal["kyle", "joey", ...] is a Tuple node too.
        if isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict) \
                and len(_names_in(node)) >= SEVERAL:
            hits += 1
    return hits


_WORD = "|".join(pipeline.NAMES)
# `[kyle, joey, kenny]`, `("kyle", "joey", ...)`, `kyle|joey|kenny`, `@kyle, @joey, @kenny`.
_INLINE = re.compile(rf"(?:['\"@]?\b(?:{_WORD})\b['\"]?\s*[,|]\s*){{{SEVERAL - 1},}}"
                     rf"['\"@]?\b(?:{_WORD})\b")
# A YAML block list: `- kyle` lines in a row.
_BLOCK = re.compile(rf"(?:^\s*-\s+['\"]?(?:{_WORD})['\"]?\s*$\n?){{{SEVERAL},}}", re.M)


def _text_lists(text: str) -> int:
    return len(_INLINE.findall(text)) + len(_BLOCK.findall(text))


def _lists_in(path: Path) -> int:
    text = path.read_text(errors="replace")
    if path.suffix == ".py":
        code = _python_lists(text)
        # Comments and docstrings may mention the agents; only code counts for .py files.
        return code
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    return _text_lists("\n".join(lines) + "\n")


def test_the_scanner_sees_the_copies_it_is_meant_to_find() -> None:
    # The scan must be able to fail: each spelling the issue counted is caught.
    assert _python_lists('AGENTS = ("kyle", "joey", "kenny", "hrm")') == 1
    assert _python_lists('X = ["ark-api", *("kyle", "joey", "kenny")]') == 1
    assert _python_lists('L = Literal["kyle", "joey", "kenny", "hrm", "api"]') == 1
    assert _python_lists('U = {"kyle": 1, "joey": 2, "kenny": 3}') == 1
    assert _text_lists("known: [kyle, joey, kenny, hrm]\n") == 1
    assert _text_lists("names:\n  - kyle\n  - joey\n  - kenny\n") == 1
    assert _text_lists("# One instance per agent: ark-agent@kyle, @joey, @kenny, @hrm.") == 1
    assert _python_lists('PAIR = ("kyle", "joey")') == 0  # two agents: a reference, not a list


def test_the_agent_list_is_written_out_in_exactly_one_product_file() -> None:
    holders = {p.relative_to(REPO).as_posix(): n for p in _product_files()
               if (n := _lists_in(p))}
    assert holders == {DECLARATION: 1}, (
        "the agent list is spelled out outside ark_runtime/pipeline.py: derive it instead")


def _load_filter(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "plugins/filter" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FilterModule().filters()


def test_every_derived_view_agrees_with_the_declaration() -> None:
    from ark_ops import placement
    from ark_ops.compose import files as compose
    from ark_runtime import agents, validators
    from ark_runtime.api import console, logs
    from ark_runtime.bus import registry, shards
    from ark_runtime.metrics import server
    from ark_runtime.settings import UNITS, fields

    names = tuple(a.name for a in pipeline.AGENTS)
    assert len(set(names)) == len(names) >= 4
    for view in (agents.AGENTS, registry.PIPELINE, validators.AGENT_NAMES, fields.ALL_AGENTS,
                 placement.AGENTS):
        assert tuple(view) == names
    assert ("redis", "api", *names) == compose.ARK_SERVICES
    assert logs.SOURCES == console.LogSource.__args__ == (*names, "api")
    units = ["ark-api.service", *(f"ark-agent@{n}.service" for n in names)]
    assert units == server.DEFAULT_UNITS
    assert (*names, "operator", "bus") == registry.ENDPOINTS
    assert (shards.SHARDED_AGENT,) == pipeline.SHARDED
    assert names[1:] == fields.CONSUMERS  # all but the one that reads the feed
    assert {n: UNITS[n] for n in names} == {a.name: list(a.domains) for a in pipeline.AGENTS}
    assert _load_filter("ark_pipeline")["ark_pipeline"]("agents") == list(names)


def test_the_message_chain_follows_the_flow_order() -> None:
    from ark_runtime.agents import agent_class
    from ark_runtime.bus import registry

    for up, down in zip(pipeline.AGENTS, pipeline.AGENTS[1:], strict=False):
        assert up.emits == down.consumes, f"{up.name} emits what {down.name} reads"
        assert pipeline.downstream(up.name) == down.name
        spec = registry.REGISTRY[up.emits]
        # The flow's reader first; a side reader (the executor reads Kyle's bars) may follow.
        assert spec.producers == (up.name,) and spec.consumers[0] == down.name
    for agent in pipeline.AGENTS:
        assert agent_class(agent.name).name == agent.name  # the class the entry names
    for message in pipeline.MESSAGES:
        assert registry.REGISTRY[message.type].model.__name__ == message.model.split(":")[1]


def test_instances_expand_only_the_sharded_agent() -> None:
    plain = [a.name for a in pipeline.AGENTS]
    assert pipeline.instances(1) == plain
    three = pipeline.instances(3)
    (sharded,) = pipeline.SHARDED
    at = three.index(sharded)
    assert three[at:at + 3] == [sharded, f"{sharded}-1", f"{sharded}-2"]
    assert [i for i in three if "-" not in i] == plain


def test_the_role_reads_the_declaration_through_its_filter() -> None:
    role_vars = yaml.safe_load((REPO / "roles/ark_runtime/vars/main.yml").read_text())
    defaults = yaml.safe_load((REPO / "roles/ark_runtime/defaults/main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters.update(_load_filter("ark_pipeline"))
    for expr in (role_vars["__ark_runtime_all_agents"], defaults["ark_runtime_logrotate_names"]):
        assert ast.literal_eval(env.from_string(expr).render()) == list(pipeline.NAMES)


def test_the_filter_names_an_unknown_view() -> None:
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="unknown pipeline view 'agent'.*agents"):
        _load_filter("ark_pipeline")["ark_pipeline"]("agent")


def test_the_declaration_is_a_leaf() -> None:
    # Both wings import it (ark_ops may not import the agents): it imports nothing of ARK.
    tree = ast.parse((REPO / DECLARATION).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"__future__", "dataclasses"}
