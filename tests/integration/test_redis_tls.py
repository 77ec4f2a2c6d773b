"""Issue #19 §4 (SEC_01): Redis over TLS with the ark_redis role's own config and certificates
from the control node's CA (ark_ops/pki.py), on a real redis-server.

The role's template renders TLS on (plaintext port closed, tls-auth-clients yes); the runtime's
settings (ARK_REDIS_TLS_DIR, or a unit's credentials) reach it with the host's certificate;
plaintext, a client without a certificate and one with another CA's are refused; the root
tools' redis-cli line (as_root_tools) logs in over TLS.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis
from conftest import REDIS_SERVER, free_port
from deployed_redis import render_acl, render_role_conf

from ark_ops.fleet.redis_cli import as_root_tools
from ark_ops.pki import CertificateAuthority
from ark_runtime.bus.streams import connect
from ark_runtime.config import TLS_CREDENTIALS, TLS_FILES, RedisSettings, TlsFiles, redis_settings
from ark_runtime.host.dr.bundle import create_bundle
from ark_runtime.host.dr.format import Sources
from ark_runtime.host.dr.redis_dump import REDIS_MEMBER, summarize
from ark_runtime.host.dr.restore import verify_bundle
from tests.unit.test_dr import populate

pytestmark = [pytest.mark.requirement("SEC_01"),
              pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")]


def _write(directory: Path, issued, names: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for what, text in (("ca", issued.ca_pem), ("cert", issued.cert_pem), ("key", issued.key_pem)):
        (directory / names[what]).write_text(text)
    os.chmod(directory / names["key"], 0o600)
    return directory


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls-redis")
    ca = CertificateAuthority(root / "control" / ".secrets" / "tls")
    server_dir = _write(root / "redis-tls", ca.issue("redis-host", ["127.0.0.1", "localhost"]),
                        {"ca": "ca.crt", "cert": "redis.crt", "key": "redis.key"})
    client_dir = _write(root / "ark-tls", ca.issue("agent-host", ["127.0.0.1", "agent-host"]),
                        TLS_FILES)
    plain_port, tls_port, password = free_port(), free_port(), "tls-test-password-0123456789"
    conf = render_role_conf(plain_port, password, __ark_redis_tls_on=True,
                            __ark_redis_plaintext_hosts=[], ark_redis_tls_port=tls_port,
                            ark_redis_tls_dir=str(server_dir),
                            ark_redis_aclfile_path=str(root / "users.acl"))
    assert f"\nport 0\ntls-port {tls_port}\n" in conf
    (root / "ark.conf").write_text(conf)
    (root / "users.acl").write_text(render_acl(password))
    (root / "redis.conf").write_text(f"dir {root}\ndaemonize no\nloglevel warning\n"
                                     f"logfile {root / 'redis.log'}\ninclude {root / 'ark.conf'}\n")
    proc = subprocess.Popen([REDIS_SERVER, str(root / "redis.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    settings = RedisSettings(host="127.0.0.1", port=tls_port, password=password, ssl=True,
                             tls=TlsFiles.find(str(client_dir), None))
    deadline = time.monotonic() + 30
    while True:
        try:
            connect(settings).ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError((root / "redis.log").read_text()[-2000:]) from None
            time.sleep(0.1)
    try:
        yield {"root": root, "ca": ca, "client_dir": client_dir, "settings": settings,
               "plain_port": plain_port, "tls_port": tls_port, "password": password}
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_runtime_settings_log_in_over_tls_with_the_hosts_certificate(tls_redis):
    env = {"ARK_REDIS_HOST": "127.0.0.1", "ARK_REDIS_PORT": str(tls_redis["tls_port"]),
           "ARK_REDIS_PASSWORD": tls_redis["password"],
           "ARK_REDIS_TLS_DIR": str(tls_redis["client_dir"])}
    settings = redis_settings(env)
    assert settings.ssl and settings.tls is not None
    client = connect(settings)
    assert client.ping() is True
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "required"


def test_plaintext_and_the_closed_port_are_refused(tls_redis):
    for port in (tls_redis["tls_port"], tls_redis["plain_port"]):
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=port, password=tls_redis["password"], socket_timeout=5,
                        socket_connect_timeout=5).ping()


def test_a_client_without_a_certificate_or_with_another_cas_is_refused(tls_redis, tmp_path):
    s = tls_redis["settings"]
    bare = {k: v for k, v in s.client_kwargs().items() if k not in ("ssl_certfile", "ssl_keyfile")}
    with pytest.raises(redis.ConnectionError):
        redis.Redis(**bare, socket_timeout=5).ping()
    other = CertificateAuthority(tmp_path / "other").issue("agent-host", ["127.0.0.1"])
    foreign = _write(tmp_path / "foreign", other, TLS_FILES)
    # Trusting the fleet's CA for the server, presenting a certificate of another CA.
    (foreign / "ca.crt").write_text(tls_redis["ca"].ca_cert_path.read_text())
    with pytest.raises(redis.ConnectionError):
        connect(RedisSettings(port=s.port, password=s.password, ssl=True,
                              tls=TlsFiles.find(str(foreign), None))).ping()


def test_a_units_credentials_take_precedence_over_the_directory(tls_redis, tmp_path):
    creds = tmp_path / "credentials"
    creds.mkdir()
    for what, name in TLS_CREDENTIALS.items():
        shutil.copy(tls_redis["client_dir"] / TLS_FILES[what], creds / name)
    files = TlsFiles.find("/nonexistent/tls", str(creds))
    assert files == TlsFiles(**{k: str(creds / n) for k, n in TLS_CREDENTIALS.items()})
    s = tls_redis["settings"]
    assert connect(RedisSettings(port=s.port, password=s.password, ssl=True, tls=files)).ping()
    # Without the credentials, the directory's files.
    assert TlsFiles.find("/etc/ark/tls", None).key == "/etc/ark/tls/host.key"
    assert TlsFiles.find(None, None) is None


def test_the_root_tools_redis_cli_line_logs_in_over_tls(tls_redis, tmp_path):
    env = tmp_path / "infrastructure.env"
    env.write_text(f"ARK_REDIS_PASSWORD={tls_redis['password']}\n"
                   f"ARK_REDIS_PORT={tls_redis['tls_port']}\n"
                   f"ARK_REDIS_TLS_DIR={tls_redis['client_dir']}\n")
    out = subprocess.run(["sh", "-c", as_root_tools(str(env)) + '-p "$ARK_REDIS_PORT" PING'],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "PONG", out.stdout + out.stderr
    assert tls_redis["password"] not in out.stdout + out.stderr


@pytest.mark.requirement("REC_03")
def test_a_dr_bundle_on_a_tls_redis_host_carries_its_dump(tls_redis, tmp_path, monkeypatch):
    """Issue #19 §5 on a Redis host with TLS on (its plaintext port 0): the bundle's dump step
    reaches it over TLS on loopback with the host's own certificate, as `ark dr bundle` does
    with infrastructure.env's settings."""
    r = connect(tls_redis["settings"])
    r.xadd("ark:stream:tls-dr", {"n": "1"})
    r.xadd("ark:stream:tls-dr", {"n": "2"})
    r.xgroup_create("ark:stream:tls-dr", "joey", id="0")
    populate(tmp_path / "host")
    monkeypatch.setenv("ARK_ROOT_PREFIX", str(tmp_path / "host"))
    monkeypatch.setenv("ARK_REDIS_PASSWORD", tls_redis["password"])
    monkeypatch.setenv("ARK_REDIS_TLS_DIR", str(tls_redis["client_dir"]))
    src = dataclasses.replace(Sources.from_env(), redis_conf=tls_redis["root"] / "redis.conf")
    manifest = verify_bundle(create_bundle(tmp_path / "host.tar.gz", src=src).path)
    assert manifest["redis"]["dump"] == REDIS_MEMBER
    assert manifest["redis"]["streams"] == summarize(r)
    assert manifest["redis"]["streams"]["ark:stream:tls-dr"]["length"] == 2
