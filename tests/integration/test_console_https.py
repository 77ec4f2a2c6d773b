"""Issue #21, TLS: `ark api` as ark-api.service runs it, with a certificate from the control
node's CA (ark_ops/pki.py) in ARK_API_TLS_DIR and a plain-HTTP redirect port:

* the console answers HTTPS only on its port (a plain-HTTP request there gets no page), with
  HSTS, and its session cookie is Secure without any proxy header;
* the certificate chains to the fleet's CA and names the address dialled;
* the plain-HTTP port answers every path with a 308 to the same path over HTTPS, and a Host
  that is not this console's with 400 (no redirect to a name an attacker chose);
* SIGTERM stops both listeners.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import REPO, RedisServer, free_port, wait_for

from ark_ops.pki import CertificateAuthority
from ark_runtime.api.passwords import hash_password
from ark_runtime.config import TLS_FILES

pytestmark = pytest.mark.requirement("SEC_02")

PASSWORD = "alice-admin-password"


@pytest.fixture
def https_console(redis_server: RedisServer, tmp_path: Path):
    issued = CertificateAuthority(tmp_path / "ca").issue("api-host", ["127.0.0.1", "localhost"])
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / TLS_FILES["cert"]).write_text(issued.cert_pem)
    (tls / TLS_FILES["key"]).write_text(issued.key_pem)
    os.chmod(tls / TLS_FILES["key"], 0o600)
    (tmp_path / "ca.crt").write_text(issued.ca_pem)
    (tmp_path / "etc" / "api").mkdir(parents=True)
    (tmp_path / "etc" / "api" / "operators.json").write_text(json.dumps([{
        "name": "alice", "role": "admin", "password_hash": hash_password(PASSWORD, n=2**10)}]))
    port, plain = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARK_", "NOTIFY_"))}
    env.update({"PYTHONPATH": str(REPO), "ARK_API_HOST": "127.0.0.1", "ARK_API_PORT": str(port),
                "ARK_API_TLS_DIR": str(tls), "ARK_API_REDIRECT_PORT": str(plain),
                "ARK_API_SECRET": "s" * 40, "ARK_REDIS_PORT": str(redis_server.port),
                "ARK_REDIS_PASSWORD": redis_server.password, "ARK_AUDIT_SINK": "stderr",
                "ARK_CONFIG_DIR": str(tmp_path / "etc"), "ARK_STATE_DIR": str(tmp_path / "state"),
                "ARK_LOG_DIR": str(tmp_path / "log"), "ARK_RUN_DIR": str(tmp_path / "run")})
    err = (tmp_path / "api.stderr").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "ark_runtime.cli", "api"], env=env,
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "api.stderr").read_text()[-2000:]
        try:
            with socket.create_connection(("127.0.0.1", plain), 1):
                pass
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
            conn.request("GET", "/health")
            return conn.getresponse().status in (200, 503)
        except OSError:
            return False

    wait_for(up, 30, interval=0.2, what="the HTTPS console and its redirect port")
    try:
        yield {"port": port, "plain": plain, "context": context, "proc": proc,
               "stderr": tmp_path / "api.stderr"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        err.close()


def test_the_console_speaks_https_only_with_hsts_and_secure_cookies(https_console) -> None:
    c = https_console
    conn = http.client.HTTPSConnection("127.0.0.1", c["port"], context=c["context"], timeout=5)
    conn.request("GET", "/login")
    page = conn.getresponse()
    page.read()
    assert page.status == 200
    assert page.getheader("strict-transport-security") == "max-age=63072000"
    conn.request("GET", "/health")
    health = conn.getresponse()
    health.read()
    assert health.getheader("strict-transport-security") == "max-age=63072000"
    # Signed in over HTTPS, with no proxy header: the session cookie is Secure.
    origin = f"https://127.0.0.1:{c['port']}"
    conn.request("POST", "/login", body=urlencode({"username": "alice", "password": PASSWORD}),
                 headers={"Content-Type": "application/x-www-form-urlencoded",
                          "Origin": origin})
    signed_in = conn.getresponse()
    signed_in.read()
    assert signed_in.status == 303, signed_in.status
    cookie = signed_in.getheader("set-cookie") or ""
    assert "HttpOnly" in cookie and "Secure" in cookie, cookie
    # Plain HTTP on the HTTPS port gets no page.
    plain = http.client.HTTPConnection("127.0.0.1", c["port"], timeout=5)
    with pytest.raises((http.client.HTTPException, OSError)):
        plain.request("GET", "/health")
        assert plain.getresponse().status >= 400
    # A client that does not trust the fleet's CA is refused the handshake.
    stranger = http.client.HTTPSConnection("127.0.0.1", c["port"], timeout=5,
                                           context=ssl.create_default_context())
    with pytest.raises(ssl.SSLError):
        stranger.request("GET", "/health")


@pytest.mark.parametrize(("host", "path", "want"), [
    ("127.0.0.1", "/console?tab=agents", "https://127.0.0.1:{port}/console?tab=agents"),
    ("localhost:{plain}", "/", "https://localhost:{port}/"),
    ("evil.example", "/", None),
])
def test_the_plain_port_only_redirects_to_https(https_console, host, path, want) -> None:
    c = https_console
    conn = http.client.HTTPConnection("127.0.0.1", c["plain"], timeout=5)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", host.format(plain=c["plain"]))
    conn.endheaders()
    res = conn.getresponse()
    assert res.read() == b""
    if want is None:
        assert res.status == 400 and res.getheader("location") is None
    else:
        assert res.status == 308
        assert res.getheader("location") == want.format(port=c["port"])


def test_sigterm_stops_both_listeners(https_console) -> None:
    c = https_console
    c["proc"].send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once shut down (systemd counts that as a clean stop).
    assert c["proc"].wait(30) in (0, -signal.SIGTERM), c["stderr"].read_text()[-2000:]
    assert "Traceback" not in c["stderr"].read_text()
    for port in (c["port"], c["plain"]):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), 1).close()
