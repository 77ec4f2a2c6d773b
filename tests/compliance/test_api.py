"""The API answers /health on the host, with a real Redis round trip."""

from __future__ import annotations

import pytest
from conftest import http_get_json

pytestmark = [pytest.mark.requirement("INFRA_01"), pytest.mark.runs_on("ark_api")]


def test_health_reports_redis_round_trip(host, api_url):
    status, body = http_get_json(host, f"{api_url}/health")
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["redis"]["ok"] is True
    assert 0 < body["redis"]["rtt_ms"] < 1000


def test_api_listens_on_its_port(host, api_port):
    # SEC_02: loopback (and the host's own address), never the wildcard.
    assert host.socket(f"tcp://127.0.0.1:{api_port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{api_port}").is_listening
