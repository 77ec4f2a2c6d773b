"""REC_01, issue #17: the console's panic on a deployed lab host is the host-side panic of
`invoke panic`: the flag, SIGKILL of every ARK unit (polkit lets the API's user kill them),
the same report; the API answers first and is gone right after; `invoke recover` brings the
host back. Needs root and the lab (run under the lab lock).
"""

from __future__ import annotations

import os
import secrets

import httpx
import pytest
import yaml

from ark_ops.deploy import run as deploy_mod
from ark_ops.fleet.panic import recover
from ark_ops.lab import lab
from ark_ops.lab.config import LabPaths
from ark_runtime.api.passwords import hash_password
from tests.support import lab_shell
from tests.support.lab_shell import wait_for

HOST = "ark-lab-1"
PASSWORD = secrets.token_urlsafe(12)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.requirement("REC_01"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]


def on(*cmd: str, check: bool = True):
    return lab_shell.on(HOST, *cmd, check=check)


@pytest.fixture(scope="module")
def api():
    paths = LabPaths.default()
    statuses = lab.up(hosts=1, user="deploy")
    group_vars = paths.inventory / "group_vars" / "ark"
    group_vars.mkdir(parents=True, exist_ok=True)
    (group_vars / "console.yml").write_text(yaml.safe_dump({"ark_runtime_api_operators": [
        {"name": "alice", "role": "admin", "password_hash": hash_password(PASSWORD)}]}))
    try:
        deploy_mod.deploy(echo=False)
        address = next(s.address for s in statuses if s.name == HOST)
        yield f"http://{address}:8101"
    finally:
        (group_vars / "console.yml").write_text("---\n{}\n")  # emptied: see test_console_lab
        lab.down()


def active_units() -> set[str]:
    out = on("systemctl", "list-units", "--plain", "--no-legend", "--state=active",
             "ark*.service", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_the_console_panic_is_the_hosts_panic(api: str) -> None:
    wait_for(lambda: {"ark-api.service", "ark-agent@kyle.service"} <= active_units(), 60,
             "the API and the agents to run")
    with httpx.Client(base_url=api, timeout=30) as client:
        resp = client.post("/login", data={"username": "alice", "password": PASSWORD})
        assert resp.status_code in (200, 303), resp.text
        csrf = client.get("/api/me").json()["csrf"]
        panic = client.post("/api/admin/panic", json={"reason": "lab drill"},
                            headers={"X-CSRF-Token": csrf})
    assert panic.status_code == 200, panic.text
    body = panic.json()
    report = body["panic"]
    assert body["result"] == "ok" and report["remaining"] == 0
    # Every agent unit was SIGKILLed by systemd on the API's request; the API spared itself.
    assert {f"ark-agent@{a}.service" for a in ("kyle", "joey", "kenny", "hrm")} \
        <= set(report["killed"])
    assert "ark-api.service" not in report["killed"]
    assert body["detail"].startswith(f"KILLED {len(report['killed'])} unit(s)")
    # ...and the API is gone right after answering; nothing of ARK runs or restarts.
    wait_for(lambda: not active_units(), 30, "every ARK unit to be dead")
    assert on("cat", "/var/lib/ark/PANIC").stdout.startswith("panic by alice via console")
    assert on("pgrep", "-u", "ark", check=False).stdout.strip() == ""
    outcomes = recover(log=lambda *_: None)
    assert all(o.ok for o in outcomes), outcomes
    wait_for(lambda: "ark-api.service" in active_units(), 60, "the API back after recover")
