"""LOG_03: the ark_alerting role's Alertmanager config, rendered from an inventory and checked
by Debian's amtool, as the role's `validate:` does before it lands."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "ark_alerting"
needs_amtool = pytest.mark.skipif(
    shutil.which("amtool") is None,
    reason="amtool is missing: ./ops installs Debian's prometheus-alertmanager package")


def defaults() -> dict:
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def render(**overrides) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    env.filters["to_json"] = json.dumps
    env.filters["bool"] = bool
    vars_ = {k: v for k, v in defaults().items() if "{{" not in str(v)}
    receivers = overrides.get("ark_alerting_receivers", [])
    vars_.update(ansible_managed="test", ark_alerting_email_from="am@ctl.example",
                 ark_alerting_default_receiver=receivers[0]["name"] if receivers else "nobody")
    vars_.update(overrides)
    return env.get_template("alertmanager.yml.j2").render(**vars_)


def amtool_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "alertmanager.yml"
    conf.write_text(text)
    return subprocess.run(["amtool", "check-config", str(conf)], capture_output=True, text=True)


RECEIVERS = [{"name": "oncall", "webhook_url": "https://hooks.example.net/ark"},
             {"name": "ops-mail", "email_to": "ops@example.net"}]


@pytest.mark.requirement("LOG_03")
def test_receivers_and_routes_come_from_the_inventory() -> None:
    doc = yaml.safe_load(render(
        ark_alerting_receivers=RECEIVERS, ark_alerting_smarthost="smtp.example.net:587",
        ark_alerting_routes=[{"receiver": "ops-mail", "matchers": ['severity="critical"'],
                              "continue": True}]))
    assert doc["route"]["receiver"] == "oncall"
    assert doc["route"]["group_by"] == ["alertname", "host"]
    assert doc["route"]["routes"] == [{"receiver": "ops-mail",
                                       "matchers": ['severity="critical"'], "continue": True}]
    by_name = {r["name"]: r for r in doc["receivers"]}
    assert by_name["oncall"]["webhook_configs"][0]["url"] == "https://hooks.example.net/ark"
    assert by_name["oncall"]["webhook_configs"][0]["send_resolved"] is True
    assert by_name["ops-mail"]["email_configs"][0]["to"] == "ops@example.net"
    assert doc["global"]["smtp_smarthost"] == "smtp.example.net:587"


@pytest.mark.requirement("LOG_03")
def test_redis_down_inhibits_the_agents_alerts() -> None:
    rules = yaml.safe_load(render())["inhibit_rules"]
    redis = next(r for r in rules if r["source_matchers"] == ['alertname="ArkRedisDown"'])
    target = redis["target_matchers"][0]
    for alert in ("ArkAgentDown", "ArkHeartbeatStale", "ArkBacklogGrowing", "ArkAgentPaused"):
        assert alert in target
    assert "ArkRedisDown" not in target.split("~", 1)[1]


@needs_amtool
@pytest.mark.requirement("LOG_03")
def test_rendered_configs_pass_amtool_check_config(tmp_path: Path) -> None:
    for text in (render(), render(ark_alerting_receivers=RECEIVERS,
                                  ark_alerting_smarthost="smtp.example.net:587",
                                  ark_alerting_smtp_auth_username="alerts",
                                  ark_alerting_smtp_auth_password="pw")):
        proc = amtool_check(tmp_path, text)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_amtool
@pytest.mark.requirement("LOG_03")
def test_amtool_refuses_a_route_to_an_unknown_receiver(tmp_path: Path) -> None:
    """What `validate:` stops before it lands (the role's preflight says it earlier)."""
    text = render(ark_alerting_receivers=RECEIVERS[:1],
                  ark_alerting_routes=[{"receiver": "pager", "matchers": []}])
    proc = amtool_check(tmp_path, text)
    assert proc.returncode != 0
    assert "pager" in proc.stdout + proc.stderr
