"""LOG_03: Alertmanager on the ark_monitoring hosts, fed by Prometheus, and nowhere else.
Read-only: safe on production."""

from __future__ import annotations

import pytest
from conftest import http_get_json, wait_for

pytestmark = pytest.mark.requirement("LOG_03")

CONFIG = "/etc/prometheus/alertmanager.yml"


@pytest.fixture(scope="module")
def on_monitoring(hostvars) -> bool:
    return hostvars["inventory_hostname"] in (hostvars.get("groups", {}).get("ark_monitoring")
                                              or [])


@pytest.fixture(scope="module")
def address(hostvars) -> str:
    return hostvars.get("ark_listen_address") or hostvars["ansible_host"]


def test_alertmanager_runs_only_on_monitoring_hosts(host, on_monitoring):
    service = host.service("prometheus-alertmanager")
    assert service.is_running == on_monitoring
    assert service.is_enabled == on_monitoring


def test_alertmanager_listens_on_the_hosts_address_with_no_cluster_port(host, on_monitoring,
                                                                        address, hostvars):
    if not on_monitoring:
        pytest.skip("not an ark_monitoring host")
    port = int(hostvars.get("ark_alerting_port", 9093))
    assert host.socket(f"tcp://{address}:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
    # The HA gossip port would listen on every interface; the role turns it off.
    assert not host.socket("tcp://0.0.0.0:9094").is_listening
    assert not host.socket("udp://0.0.0.0:9094").is_listening


def test_the_deployed_config_passes_amtool_and_is_not_world_readable(host, on_monitoring):
    if not on_monitoring:
        pytest.skip("not an ark_monitoring host")
    conf = host.file(CONFIG)
    assert conf.user == "root" and conf.group == "prometheus" and conf.mode == 0o640
    with host.sudo():
        out = host.run("amtool check-config %s", CONFIG)
    assert out.rc == 0, out.stdout + out.stderr


def test_prometheus_sends_its_alerts_to_this_alertmanager(host, on_monitoring, address,
                                                          hostvars):
    if not on_monitoring:
        pytest.skip("not an ark_monitoring host")
    port = int(hostvars.get("ark_alerting_port", 9093))

    def active() -> list[str]:
        status, doc = http_get_json(host, f"http://{address}:9090/api/v1/alertmanagers")
        assert status == 200, doc
        return [a["url"] for a in doc["data"]["activeAlertmanagers"]]

    urls = wait_for(active, 60, 2, what="Prometheus to discover its Alertmanager")
    assert any(f"{address}:{port}" in u for u in urls), urls
