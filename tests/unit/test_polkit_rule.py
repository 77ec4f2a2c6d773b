"""UI_01 / issue 21 vuln 1: the polkit rule as the role renders it, run in node against
the questions systemd asks polkit (action id, unit, verb, subject user)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule as AnsibleFilters

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "ark_runtime"
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def jinja() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    # Ansible's own filters: a stand-in regex_replace once hid a backreference that
    # Ansible rendered literally (every agent unit became "ark-agent@\\1.service").
    env.filters.update(AnsibleFilters().filters())
    return env


def console_units(instances: list[str]) -> list[str]:
    """__ark_runtime_console_units from the role's vars, templated by Ansible itself (its
    templar escapes backslashes in expressions: plain Jinja would not show what a host gets)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    expr = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())[
        "__ark_runtime_console_units"]
    templar = Templar(loader=DataLoader(),
                      variables={"__ark_runtime_agent_instances": instances})
    return list(templar.template(expr))


def rule(instances: list[str], user: str = "ark") -> str:
    return jinja().get_template("50-ark-units.rules.j2").render(
        ansible_managed="test", ark_runtime_api_user=user,
        __ark_runtime_console_units=console_units(instances))


def ask(rule_text: str, questions: list[dict]) -> list[str]:
    """polkit's answer per question: YES or NOT_HANDLED (then polkit's default: refused)."""
    script = "\n".join([
        "const rules = [];",
        'const polkit = {Result: {YES: "YES", NOT_HANDLED: "NOT_HANDLED"},',
        "              addRule: f => rules.push(f)};",
        rule_text,
        f"const qs = {json.dumps(questions)};",
        "console.log(JSON.stringify(qs.map(q => rules[0](",
        "    {id: q.id, lookup: k => q[k]}, {user: q.user}))));"])
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


MANAGE = "org.freedesktop.systemd1.manage-units"


def q(unit: str, verb: str = "start", user: str = "ark", action: str = MANAGE) -> dict:
    return {"id": action, "unit": unit, "verb": verb, "user": user}


def test_the_units_are_this_hosts_exact_names() -> None:
    assert console_units(["kyle", "joey", "joey-1"]) == [
        "ark.target", "ark-api.service", "ark-snapshot.service", "ark-metrics.service",
        "ark-agent@kyle.service",
        "ark-agent@joey.service", "ark-agent@joey-1.service"]


@needs_node
@pytest.mark.requirement("UI_01")
def test_only_the_exact_units_are_granted() -> None:
    text = rule(["kyle", "joey"])
    granted = [q("ark-agent@kyle.service", v) for v in ("start", "stop", "restart", "kill")] + [
        q("ark.target"), q("ark-api.service", "restart"), q("ark-snapshot.service"),
        q("ark-metrics.service", "kill")]  # kill: the console's panic (REC_01)
    assert ask(text, granted) == ["YES"] * len(granted)
    refused = [
        q("ark-x.service"),  # systemd-run --unit=ark-x -p User=root (systemd 257)
        q("ark-x"), q(""), q("ark-run-1.service"),
        q("ark-heal.service"), q("ark-audit-ingest.service"),  # root oneshots
        q("ark-audit-ingest.service", "kill"),
        q("ark-agent@hrm.service"),  # not on this host
        q("ark-agent@kyle;x.service"), q("ark-snapshot.timer"),
        q("ark-agent@kyle.service", "enable"), q("ark-agent@kyle.service", "reload"),
        q("ark-agent@kyle.service", user="ark-metrics"), q("ark.target", user="root"),
        q("ark-agent@kyle.service", action="org.freedesktop.systemd1.manage-unit-files"),
    ]
    assert ask(text, refused) == ["NOT_HANDLED"] * len(refused)


@needs_node
@pytest.mark.requirement("UI_01")
def test_only_the_api_user_is_granted() -> None:
    text = rule(["kyle"], user="ark-api")
    assert ask(text, [q("ark-agent@kyle.service", user="ark-api"),
                      q("ark-agent@kyle.service", user="ark")]) == ["YES", "NOT_HANDLED"]
