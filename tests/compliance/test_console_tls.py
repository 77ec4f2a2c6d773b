"""Issue #21: the console speaks HTTPS only, with this host's certificate from the fleet's CA,
HSTS on every answer; its plain-HTTP port answers with a redirect and nothing else."""

from __future__ import annotations

import pytest
from conftest import api_tls, http_get

pytestmark = [pytest.mark.requirement("UI_01"), pytest.mark.runs_on("ark_api")]


@pytest.fixture(scope="module")
def https(hostvars, api_port) -> str:
    if not api_tls(hostvars):
        pytest.skip("not applicable: the inventory serves the console over plain HTTP "
                    "(ark_runtime_api_tls: false, behind a TLS proxy)")
    return f"https://127.0.0.1:{api_port}"


def test_the_console_answers_https_verified_by_the_fleet_ca_with_hsts(host, https):
    status, headers, body = http_get(host, f"{https}/health")
    assert status == 200, body
    assert "max-age=" in headers.get("strict-transport-security", ""), headers


def test_plain_http_to_the_console_port_gets_no_page(host, https, api_port):
    status, _, body = http_get(host, f"http://127.0.0.1:{api_port}/health")
    assert status in (0, 400), (status, body)  # a TLS port: no HTTP answer, or a 400
    assert '"redis"' not in body


def test_the_plain_http_port_only_redirects_to_https(host, https, hostvars, api_port):
    port = int(hostvars.get("ark_runtime_api_redirect_port", 8100))
    if port == 0:
        pytest.skip("not applicable: the inventory has no redirect port")
    status, headers, body = http_get(host, f"http://127.0.0.1:{port}/console?tab=logs")
    assert status == 308, (status, body)
    assert headers["location"] == f"https://127.0.0.1:{api_port}/console?tab=logs"
    assert body == ""
