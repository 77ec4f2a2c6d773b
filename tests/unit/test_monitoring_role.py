"""LOG_03: the ark_monitoring role's scrape config, rendered from an inventory, and the lab
inventory that puts a host in ark_monitoring."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

from ark_ops.lab import inventory
from ark_ops.lab.config import LabHost, LabPaths

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "ark_monitoring"


def render(config_dir: Path, hosts: dict[str, dict], monitoring: list[str] | None = None) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    return env.get_template("prometheus.yml.j2").render(
        ansible_managed="test", ark_monitoring_scrape_group="ark",
        groups={"ark": list(hosts), "ark_monitoring": monitoring or list(hosts)[:1]},
        ark_monitoring_alertmanager_group="ark_monitoring", ark_monitoring_alertmanager_port=9093,
        hostvars=hosts, ark_monitoring_metrics_port=9101, ark_monitoring_scrape_interval="15s",
        ark_monitoring_evaluation_interval="15s", ark_monitoring_config_dir=str(config_dir),
        ark_monitoring_listen_address="10.213.0.2", ark_monitoring_port=9090)


@pytest.mark.requirement("LOG_03")
def test_every_ark_host_of_the_inventory_is_a_target(tmp_path: Path) -> None:
    hosts = {"ark-2": {"ansible_host": "10.0.0.2"},
             "ark-1": {"ansible_host": "10.0.0.1", "ark_metrics_port": 9200},
             "ark-3": {"ansible_host": "10.0.0.3", "ark_listen_address": "192.0.2.3"}}
    doc = yaml.safe_load(render(tmp_path, hosts))
    job = next(j for j in doc["scrape_configs"] if j["job_name"] == "ark")
    got = [(c["labels"]["host"], c["targets"]) for c in job["static_configs"]]
    assert got == [("ark-1", ["10.0.0.1:9200"]), ("ark-2", ["10.0.0.2:9101"]),
                   ("ark-3", ["192.0.2.3:9101"])]
    assert doc["rule_files"] == [f"{tmp_path}/ark_alerts.yml"]


@pytest.mark.requirement("LOG_03")
def test_alerts_go_to_the_alertmanager_on_every_monitoring_host(tmp_path: Path) -> None:
    hosts = {"m-2": {"ansible_host": "10.0.0.2", "ark_alerting_port": 9193},
             "m-1": {"ansible_host": "10.0.0.1"}, "a-3": {"ansible_host": "10.0.0.3"}}
    doc = yaml.safe_load(render(tmp_path, hosts, monitoring=["m-2", "m-1"]))
    targets = doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["10.0.0.1:9093", "10.0.0.2:9193"]


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is missing: ./ops installs Debian's prometheus package")
@pytest.mark.requirement("LOG_03")
def test_rendered_config_passes_promtool_check_config(tmp_path: Path) -> None:
    shutil.copy(ROLE / "files" / "ark_alerts.yml", tmp_path / "ark_alerts.yml")
    conf = tmp_path / "prometheus.yml"
    conf.write_text(render(tmp_path, {"a": {"ansible_host": "10.0.0.1"}}))
    proc = subprocess.run(["promtool", "check", "config", str(conf)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (tmp_path / "ark_alerts.yml").unlink()  # the rules must be in place first
    assert subprocess.run(["promtool", "check", "config", str(conf)],
                          capture_output=True).returncode != 0


def test_role_follows_the_conventions() -> None:
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    assert tasks[0]["ansible.builtin.import_tasks"] == "preflight.yml"
    for task in tasks + yaml.safe_load((ROLE / "tasks" / "preflight.yml").read_text()):
        assert task["name"].startswith("LOG_03 | ")
        module = next(k for k in task if k.startswith("ansible."))
        assert module.count(".") == 2  # FQCN
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert all(k.startswith("ark_monitoring_") for k in defaults)
    assert set(defaults) <= set(options)


def test_lab_inventory_puts_the_first_host_in_ark_monitoring(tmp_path: Path) -> None:
    paths = LabPaths(state=tmp_path / "state", cache=tmp_path / "cache",
                     inventory=tmp_path / "inv")
    doc = inventory.render(paths, [LabHost(1), LabHost(2)])
    monitoring = doc["all"]["children"]["ark_monitoring"]["hosts"]
    assert list(monitoring) == [LabHost(1).name]
    assert LabHost(1).name in doc["all"]["children"]["ark"]["hosts"]
