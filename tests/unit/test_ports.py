"""INFRA_03: the port check names the real process holding a port, and how to fix it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ark_runtime.cli import main
from ark_runtime.host import ports
from tests.support.tools import needs_tool

pytestmark = pytest.mark.requirement("INFRA_03")
SCRIPT = Path(ports.__file__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s.port == port for s in ports.listeners()):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def http_server() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        yield proc, port
    finally:
        proc.kill()
        proc.wait()


def test_parse_proc_net_v4_and_v6() -> None:
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
        "   0: 0100007F:1FA5 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999 "
        "       0 4242 1 0000000000000000 100 0 0 10 0\n"
        "   1: 0100007F:1FA6 0100007F:D431 01 00000000:00000000 00:00000000 00000000   999 "
        "       0 4243 1 0000000000000000 100 0 0 10 0\n"
        "   2: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000   104        0 77 1 0 100 0 0 10 0\n"
    )
    got = ports.parse_proc_net(text)
    assert [(lsn.port, lsn.address, lsn.inode, lsn.uid) for lsn in got] == [
        (8101, "127.0.0.1", 4242, 999),
        (6379, "0000:0000:0000:0000:0000:0000:0000:0001", 77, 104),
    ]


def test_foreign_process_is_named_with_fix(http_server: tuple[subprocess.Popen[bytes], int],
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    proc, port = http_server
    [report] = ports.check_ports({"api": port})
    assert report.status == "foreign"
    assert [h.pid for h in report.holders] == [proc.pid]
    msg = report.message
    assert f"port {port} (api) is held by python" in msg
    assert f"pid {proc.pid}" in msg and "http.server" in msg
    assert f"kill {proc.pid}" in msg and "set ARK_API_PORT" in msg
    monkeypatch.setenv("ARK_API_PORT", str(port))
    monkeypatch.setenv("ARK_REDIS_PORT", str(free_port()))
    monkeypatch.setenv("ARK_METRICS_PORT", str(free_port()))
    assert main(["ports", "check"]) == 69
    assert f"PORT IN USE: port {port} (api)" in capsys.readouterr().err


def test_free_ports_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    a, b = free_port(), free_port()
    assert main(["ports", "check", "--ports", f"api={a},redis={b}", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and {p["status"] for p in doc["ports"]} == {"free"}


def test_ark_api_holding_api_port_is_ours(tmp_path: Path) -> None:
    port = free_port()
    fake = tmp_path / "ark"  # argv looks like `python3 .../bin/ark api`
    fake.write_text(
        "import socket, sys, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, str(fake), "api"])
    try:
        wait_listening(port)
        assert ports.check_ports({"api": port})[0].status == "ours"
        # ... but the same process on the Redis port is not Redis.
        assert ports.check_ports({"redis": port})[0].status == "foreign"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(("cmdline", "serves"), [
    ("/opt/ark/venv/bin/python /opt/ark/venv/bin/ark api", True),
    ("/opt/ark/venv/bin/ark api --bind 127.0.0.1", True),
    ("python -m ark_runtime.cli api", True),
    ("python -m ark_runtime.cli api hash-password", False),  # a tool under `ark api`
    ("/opt/ark/venv/bin/ark api check-operators", False),
    ("/opt/ark/venv/bin/ark agent kyle", False),
    ("python3 -m http.server 8101", False),
])
def test_only_the_api_server_counts_as_ours_on_the_api_port(cmdline: str, serves: bool) -> None:
    holder = ports.Holder(pid=1, comm="python3", cmdline=cmdline, user="ark")
    assert ports.is_ours("api", holder) is serves


@needs_tool("redis-server", "redis-server")
def test_redis_server_on_redis_port_is_ours_and_foreign_on_api() -> None:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        wait_listening(port)
        assert ports.check_ports({"redis": port})[0].status == "ours"
        api = ports.check_ports({"api": port})[0]
        assert api.status == "foreign" and "redis-server" in api.message
    finally:
        proc.kill()
        proc.wait()


def test_standalone_script_stdlib_only(http_server: tuple[subprocess.Popen[bytes], int],
                                       tmp_path: Path) -> None:
    """As the Ansible preflight runs it: the single file, copied to a host without ARK,
    isolated mode (no site-packages, no cwd on sys.path)."""
    proc, port = http_server
    copy = tmp_path / "ports.py"
    shutil.copy(SCRIPT, copy)
    other = free_port()
    res = subprocess.run(["/usr/bin/python3", "-I", str(copy), "--ports",
                          f"api={port},redis={other}", "--json"],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
                         cwd=tmp_path)
    assert res.returncode == 69, res.stderr
    doc = json.loads(res.stdout)
    api, redis = doc["ports"]
    assert api["status"] == "foreign" and api["holders"][0]["pid"] == proc.pid
    assert redis["status"] == "free"
    bad = subprocess.run(["/usr/bin/python3", "-I", str(copy), "--ports", "api=99999"],
                         capture_output=True, text=True)
    assert bad.returncode == 64 and "outside 1-65535" in bad.stderr


def test_module_has_no_ark_runtime_import() -> None:
    import ast

    tree = ast.parse(SCRIPT.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("ark_runtime"), node.module
        elif isinstance(node, ast.Import):
            assert all(not a.name.startswith("ark_runtime") for a in node.names)


# A uid of its own for the holder: the fallback names *that user's* processes, and a root-owned
# holder would race with other workers' root `ark api ...` processes (seen in CI).
HOLDER_UID = 65532


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_unprivileged_check_still_reports_holder_user() -> None:
    """Run as nobody: another user's fd table is unreadable, so the report falls back to the
    socket's owner and says so rather than claiming the port is free."""
    port = free_port()
    server = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", str(port), "--bind",
                               "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              user=HOLDER_UID, group=HOLDER_UID, cwd="/")
    try:
        wait_listening(port)
        res = _check_as_nobody(port)
    finally:
        server.kill()
        server.wait()
    assert res.returncode == 69, res.stderr
    [api] = json.loads(res.stdout)["ports"]
    assert api["status"] == "foreign"
    assert api["holders"][0]["user"] == str(HOLDER_UID) and api["holders"][0]["exact"] is False
    assert "run as root" in api["message"]


def _check_as_nobody(port: int) -> subprocess.CompletedProcess[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # pytest's tmp_path is 0700 root
        os.chmod(tmp, 0o755)
        copy = Path(tmp) / "ports.py"
        shutil.copy(SCRIPT, copy)
        os.chmod(copy, 0o644)
        res = subprocess.run(["/usr/bin/python3", "-I", str(copy), "--ports", f"api={port}",
                              "--json"], capture_output=True, text=True, user=65534,
                             group=65534, cwd=tmp)
    return res


def test_every_needed_port_is_in_the_deploy_preflight_and_the_env_schema():
    """A port `ark ports check` knows about but the deploy preflight skips would only be
    found taken after the deploy had already changed the host."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    site = yaml.safe_load((root / "playbooks/site.yml").read_text())
    scripts = [t["ansible.builtin.script"] for t in site[0]["pre_tasks"]
               if "ansible.builtin.script" in t]
    cmd = next(s["cmd"] for s in scripts if "ports.py" in s["cmd"])
    schema = yaml.safe_load((root / "ark_runtime/env.schema.yaml").read_text())["variables"]
    for role, (variable, default) in ports.PORTS.items():
        assert f"{role}={{{{ ark_{role}_port }}}}" in cmd, role
        assert schema[variable]["type"] == "port" and schema[variable]["default"] == default
