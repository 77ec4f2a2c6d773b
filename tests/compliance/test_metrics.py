"""LOG_03: /metrics on every ARK host, scraped by the inventory's Prometheus, alerts live."""

from __future__ import annotations

import re

import pytest
import testinfra
from conftest import http_get_json, wait_for

from ark_ops.verify.report import NOT_HERE

pytestmark = pytest.mark.requirement("LOG_03")

INFRA_ENV = "/etc/ark/env/infrastructure.env"
# Expanded on the host: the command line holds the variable's name, never its value.
COUNT_LEAKS_IN_METRICS = ('. {env} && [ -n "$ARK_REDIS_PASSWORD" ] && '
                     'curl -fsS --max-time 10 {url} | grep -cF -- "$ARK_REDIS_PASSWORD"')


@pytest.fixture(scope="module")
def metrics_url(host, hostvars):
    address = hostvars.get("ark_listen_address") or hostvars["ansible_host"]
    return f"http://{address}:{int(hostvars.get('ark_metrics_port', 9101))}/metrics"


@pytest.fixture(scope="module")
def monitoring(request, hostvars):
    """(testinfra host, base URL) of the inventory's Prometheus; skip when it has none."""
    names = hostvars.get("groups", {}).get("ark_monitoring") or []
    if not names:
        pytest.skip(NOT_HERE + "the inventory has no ark_monitoring host")
    inventory = request.config.getoption("ansible_inventory")
    mon = testinfra.get_host(f"ansible://{names[0]}", ansible_inventory=inventory)
    mvars = mon.ansible.get_variables()
    address = mvars.get("ark_listen_address") or mvars["ansible_host"]
    return mon, f"http://{address}:9090"


def _url(host) -> str:
    v = host.ansible.get_variables()
    address = v.get("ark_listen_address") or v["ansible_host"]
    return f"http://{address}:{int(v.get('ark_metrics_port', 9101))}/metrics"


def scrape(host, url: str) -> str:
    return host.check_output("curl -fsS --max-time 10 %s", url)


def test_exporter_runs_hardened_as_its_own_user(host):
    svc = host.service("ark-metrics.service")
    assert svc.is_enabled and svc.is_running
    props = svc.systemd_properties
    assert props["User"] == "ark-metrics" and props["Group"] == "ark"
    assert 'ark_collector_up{collector="units"} 1.0' in scrape(host, _url(host))
    score = host.check_output("systemd-analyze security ark-metrics.service --no-pager")
    exposure = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", score).group(1))
    assert exposure <= 1.5, score


def test_listens_on_the_hosts_address_only(host, hostvars):
    port = int(hostvars.get("ark_metrics_port", 9101))
    listeners = host.check_output("ss -Hltn 'sport = :%s'", str(port))
    assert listeners, "nothing listens on the metrics port"
    for line in listeners.splitlines():
        local = line.split()[3]
        assert not local.startswith(("0.0.0.0:", "*:", "[::]:")), local


def test_exposition_has_the_figures_and_no_secret(host, metrics_url, hostvars, agent_instances):
    body = scrape(host, metrics_url)
    # The password is compared on the host (read from its root-only env file there): it
    # never crosses a command line or reaches this process, so a failure cannot print it.
    leak = host.run("sh -c %s", COUNT_LEAKS_IN_METRICS.format(env=INFRA_ENV, url=metrics_url))
    assert leak.stdout.strip() == "0", "the Redis password is in the metrics exposition"
    for name in ("ark_build_info", "ark_host_cpu_usage_ratio", "ark_host_memory_bytes",
                 "ark_tree_bytes", "ark_unit_active", "ark_unit_rss_bytes", "ark_panic",
                 "ark_collector_up"):
        assert re.search(rf"^{name}[{{ ]", body, re.M), name
    for agent in ("kyle", "joey", "kenny", "hrm"):
        beat = f'ark_agent_heartbeat_age_seconds{{agent="{agent}"}}'
        # Heartbeats come from the agents' units: only the hosts that run the agent have them.
        assert (beat in body) == (agent in agent_instances), (agent, agent_instances)
    if "ark_redis" in hostvars.get("group_names", []):
        assert "ark_redis_up 1.0" in body
        assert 'ark_stream_group_pending{group="joey",stream="joey"}' in body
    assert 'ark_collector_up{collector="units"} 1.0' in body


def _target(monitoring, host_name: str) -> dict | None:
    mon, base = monitoring
    status, doc = http_get_json(mon, f"{base}/api/v1/targets?state=active")
    assert status == 200, doc
    for t in doc["data"]["activeTargets"]:
        if t["labels"].get("job") == "ark" and t["labels"].get("host") == host_name:
            return t
    return None


# Scrapes that must fail in a row before the check calls the target down: the first one
# seen may predate the check (a deploy restarting the exporter), the next two cannot.
DOWN_SCRAPES = 3


def test_prometheus_scrapes_this_host_and_it_is_up(host, hostvars, monitoring):
    name = hostvars["inventory_hostname"]
    failed: dict[str, str] = {}  # lastScrape -> lastError of each failed scrape seen

    def verdict() -> dict | None:
        target = _target(monitoring, name)
        if target and target["health"] == "up":
            return target
        if target and target["health"] == "down":
            failed[target["lastScrape"]] = target["lastError"]
        # Down on every scrape for a while: say so now rather than at the bound.
        return target if len(failed) >= DOWN_SCRAPES else None

    target = wait_for(verdict, 90, 2, what=f"{name}'s target up in Prometheus")
    assert target["health"] == "up", \
        f"{name}'s last {len(failed)} scrapes failed: {target['lastError']}"
    assert target["scrapeUrl"].endswith("/metrics")


def _alert_state(monitoring, alert: str, **labels: str) -> str | None:
    mon, base = monitoring
    status, doc = http_get_json(mon, f"{base}/api/v1/alerts")
    assert status == 200, doc
    for a in doc["data"]["alerts"]:
        if a["labels"].get("alertname") == alert and all(
                a["labels"].get(k) == v for k, v in labels.items()):
            return a["state"]
    return None


# How long an alert may take to change state on a busy machine: it waits for the state,
# not for a window, so a loaded CI runner only makes it slower, never red. Generous on
# purpose (a scrape, an evaluation and `for:` are each seconds when idle).
ALERT_SLACK = 300


@pytest.mark.disruptive
@pytest.mark.runs_agent("joey")
def test_stopping_an_agent_raises_its_alert(host, hostvars, monitoring):
    name, unit = hostvars["inventory_hostname"], "ark-agent@joey.service"
    mon, base = monitoring
    status, rules = http_get_json(mon, f"{base}/api/v1/rules?type=alert")
    assert status == 200, rules
    rule = next(r for g in rules["data"]["groups"] for r in g["rules"]
                if r["name"] == "ArkAgentDown")
    bound = rule["duration"] + ALERT_SLACK

    def state():
        return _alert_state(monitoring, "ArkAgentDown", host=name, unit=unit)

    # An earlier check's alert may still be resolving: start from none.
    wait_for(lambda: state() is None, ALERT_SLACK, 2, what="no ArkAgentDown before the stop")
    host.run_test("systemctl stop %s", unit)
    try:
        # Pending once a scrape and an evaluation saw it down; firing after `for:` more.
        wait_for(lambda: state() == "firing", bound, 2,
                 what=f"ArkAgentDown firing for {unit} on {name}")
    finally:
        host.run_test("systemctl start %s", unit)
    wait_for(lambda: state() is None, ALERT_SLACK, 2,
             what="the alert to clear after the restart")
