"""LOG_03: the ark_alerting role's config in Debian's real Alertmanager (on loopback): an alert
reaches the webhook receiver, Redis down inhibits the agents' alerts, and an `alerts.silence`
amtool command silences what it names."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jinja2
import pytest
import yaml
from conftest import REPO, free_port, wait_for

from ark_ops.fleet.alerts import Silence

ALERTMANAGER = shutil.which("prometheus-alertmanager")
pytestmark = [
    pytest.mark.requirement("LOG_03"),
    pytest.mark.skipif(ALERTMANAGER is None or shutil.which("amtool") is None,
                       reason="./ops installs Debian's prometheus-alertmanager (and amtool)"),
]
ROLE = REPO / "roles" / "ark_alerting"


def render(webhook: str) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    env.filters["to_json"] = json.dumps
    env.filters["bool"] = bool
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    vars_ = {k: v for k, v in defaults.items() if "{{" not in str(v)}
    vars_.update(ansible_managed="test", ark_alerting_email_from="am@localhost",
                 ark_alerting_receivers=[{"name": "hook", "webhook_url": webhook}],
                 ark_alerting_default_receiver="hook", ark_alerting_group_wait="1s",
                 ark_alerting_group_interval="1s")
    return env.get_template("alertmanager.yml.j2").render(**vars_)


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook) -> Iterator[str]:
    url, _ = webhook
    conf = tmp_path / "alertmanager.yml"
    conf.write_text(render(url))
    port = free_port()
    proc = subprocess.Popen([ALERTMANAGER, f"--config.file={conf}",
                             f"--storage.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}",
                             "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(ready, timeout=30, interval=0.2, what="Alertmanager to be ready")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def post_alerts(base: str, *alerts: dict[str, str]) -> None:
    now = datetime.now(UTC)
    body = [{"labels": labels, "annotations": {"summary": labels["alertname"]},
             "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat()}
            for labels in alerts]
    req = urllib.request.Request(f"{base}/api/v2/alerts", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    assert urllib.request.urlopen(req, timeout=10).status == 200


def states(base: str) -> dict[str, dict]:
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=10) as resp:
        return {a["labels"]["alertname"]: a["status"] for a in json.load(resp)}


def notified(received: list[dict]) -> set[str]:
    return {a["labels"]["alertname"] for n in received for a in n["alerts"]}


def test_an_alert_reaches_the_webhook_and_redis_down_holds_the_agents_alerts(alertmanager,
                                                                             webhook):
    _, received = webhook
    post_alerts(alertmanager, {"alertname": "ArkAgentDown", "host": "h1", "severity": "critical",
                               "unit": "ark-agent@kyle.service"})
    wait_for(lambda: "ArkAgentDown" in notified(received), timeout=30, interval=0.2,
             what="ArkAgentDown at the webhook")
    post_alerts(alertmanager,
                {"alertname": "ArkRedisDown", "host": "h2", "severity": "critical"},
                {"alertname": "ArkHeartbeatStale", "host": "h3", "severity": "critical",
                 "agent": "joey"})
    wait_for(lambda: "ArkRedisDown" in notified(received), timeout=30, interval=0.2,
             what="ArkRedisDown at the webhook")
    st = wait_for(lambda: (s := states(alertmanager)).get("ArkHeartbeatStale", {}).get(
        "inhibitedBy") and s, timeout=30, interval=0.2, what="the heartbeat alert inhibited")
    assert st["ArkHeartbeatStale"]["state"] == "suppressed"
    assert "ArkHeartbeatStale" not in notified(received)


def test_a_silence_from_alerts_silence_mutes_what_it_names(alertmanager, webhook):
    spec = Silence.build("ArkAgentPaused", ["host=h1"], "1h", "feed vendor outage", "alice@ctl")
    out = subprocess.run(spec.amtool_argv(alertmanager), capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    silence_id = out.stdout.strip().splitlines()[-1]
    post_alerts(alertmanager,
                {"alertname": "ArkAgentPaused", "host": "h1", "agent": "kyle"},
                {"alertname": "ArkAgentPaused", "host": "h2", "agent": "kyle"})
    with urllib.request.urlopen(f"{alertmanager}/api/v2/silence/{silence_id}", timeout=10) as r:
        silence = json.load(r)
    assert (silence["createdBy"], silence["comment"]) == ("alice@ctl", "feed vendor outage")

    def by_host() -> dict[str, dict]:
        with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=10) as resp:
            return {a["labels"]["host"]: a["status"] for a in json.load(resp)}

    st = wait_for(lambda: len(s := by_host()) == 2 and s, timeout=30, interval=0.2,
                  what="both alerts")
    assert st["h1"]["silencedBy"] == [silence_id] and st["h2"]["silencedBy"] == []
