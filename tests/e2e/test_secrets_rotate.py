"""Issue 22 §3 on a deployed lab host reached as a sudo user: `invoke secrets.rotate` for the
session secret, the console operators and the snapshot key, with the pipeline running.

  * session-secret: api.env holds the new value, ark-api restarted, every agent kept its PID,
    a session signed in before no longer works; the next deploy changes nothing;
  * operators: refused while an operator keeps the deployed password hash; with new hashes
    the old password is refused and the new one signs in;
  * snapshot-key: a snapshot taken before verifies after (restoring one: the unit test), a
    tampered one stays refused, the interval unit signs with the new key;
  * each is audited on the control node and the host with one correlation id, and no secret
    value appears in any output.

Needs root and the lab tools; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from ark_ops.deploy import run as deploy_mod
from ark_ops.lab import lab
from ark_ops.lab.config import LabPaths
from ark_runtime.api.passwords import hash_password
from ark_runtime.bus.acl import LINK_USERS
from tests.support import console, lab_shell
from tests.support.console import console_url
from tests.support.lab_shell import lab_up, wait_for

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

REPO = Path(__file__).resolve().parents[2]
HOST = "ark-lab-1"
ARK = "/opt/ark/venv/bin/ark"
OPERATOR = "e2e-rotator"
AGENTS = ("kyle", "joey", "kenny", "hrm")
PASSWORDS = {"alice": secrets.token_urlsafe(12)}


def on(*cmd: str) -> str:
    return lab_shell.on(HOST, *cmd, check=True).stdout


def invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "invoke"), *args], cwd=REPO,
                          env={**os.environ, "ARK_ACTOR": OPERATOR}, capture_output=True,
                          text=True, timeout=900, stdin=subprocess.DEVNULL)


def agent_units() -> list[str]:
    return on("systemctl list-units --plain --no-legend --state=running 'ark-agent@*.service'"
              " | awk '{print $1}'").split()


def agent_pids() -> dict[str, str]:
    """Every running agent instance (Joey's shards too) -> its main PID."""
    pids = {u: on("systemctl", "show", "-p", "MainPID", "--value", u).strip()
            for u in agent_units()}
    assert {f"ark-agent@{a}.service" for a in AGENTS} <= set(pids)
    return pids


def write_operators(group_vars: Path, password: str) -> None:
    (group_vars / "console.yml").write_text(yaml.safe_dump({"ark_runtime_api_operators": [
        {"name": "alice", "role": "admin", "password_hash": hash_password(password)}]}))


def control_records() -> list[dict]:
    from ark_runtime.host.audit.chain import iter_records

    d = LabPaths.default().inventory / ".state" / "audit"
    return [r for _f, r in iter_records(d) if r["action"] == "secrets.rotate"]


@pytest.fixture(scope="module")
def api():
    paths = LabPaths.default()
    statuses = lab_up(1)
    group_vars = paths.inventory / "group_vars" / "ark"
    group_vars.mkdir(parents=True, exist_ok=True)
    write_operators(group_vars, PASSWORDS["alice"])
    try:
        deploy_mod.deploy(echo=False)
        address = next(s.address for s in statuses if s.name == HOST)
        yield console_url(address), group_vars
    finally:
        (group_vars / "console.yml").write_text("---\n{}\n")  # emptied: see test_console_lab
        lab.down()


def sign_in(base: str, password: str) -> httpx.Client:
    client = console.client(base, timeout=30)
    resp = client.post("/login", data={"username": "alice", "password": password})
    assert resp.status_code in (200, 303), resp.text
    assert client.get("/api/me").status_code == 200
    return client


def all_running() -> bool:
    return all(on("systemctl", "is-active", f"ark-agent@{a}.service").strip() == "active"
               for a in AGENTS)


@pytest.mark.requirement("SEC_01")
def test_session_secret_rotates_with_only_the_api_restarted(api) -> None:
    base, _gv = api
    wait_for(all_running, 120, "the agents to run")
    secret_file = LabPaths.default().inventory / ".secrets" / "api_secret"
    old = secret_file.read_text().strip()
    client = sign_in(base, PASSWORDS["alice"])
    pids, api_pid = agent_pids(), on("systemctl", "show", "-p", "MainPID", "--value",
                                     "ark-api.service").strip()

    proc = invoke("secrets.rotate", "session-secret")

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    new = secret_file.read_text().strip()
    assert new != old and len(new) == 48
    for text in (proc.stdout, proc.stderr):
        assert old not in text and new not in text
    assert f"ark-api restarted alone; {len(pids)} agent(s) kept running" in proc.stdout
    assert "every console session ended" in proc.stdout
    assert f'ARK_API_SECRET="{new}"' in on("cat", "/etc/ark/env/api.env")
    assert agent_pids() == pids  # the pipeline never stopped
    assert on("systemctl", "show", "-p", "MainPID", "--value", "ark-api.service").strip() \
        != api_pid
    wait_for(lambda: console.get(base + "/health", timeout=5).status_code == 200, 180,
             "the API to answer")
    assert client.get("/api/me").status_code == 401  # the old session is gone
    client.close()
    done = control_records()[-1]
    assert (done["who"], done["args"]["kind"], done["result"]) == \
        (OPERATOR, "session-secret", "ok")
    host = [json.loads(x) for x in on(ARK, "audit", "show", "--json", "--action",
                                      "secrets.rotate").splitlines() if x.strip()][-1]
    assert host["correlation_id"] == done["correlation_id"] and host["result"] == "ok"
    for text in (json.dumps(done), json.dumps(host)):
        assert old not in text and new not in text
    # The file is what the role renders from .secrets/: the next deploy changes nothing.
    out = invoke("deploy")
    assert out.returncode == 0, out.stdout[-3000:]
    assert f"{HOST} changed=0" in out.stdout
    assert agent_pids() == pids


@pytest.mark.requirement("UI_02")
def test_operators_rotate_only_with_new_passwords(api) -> None:
    base, group_vars = api
    refused = invoke("secrets.rotate", "operators")
    assert refused.returncode == 1
    assert "alice still has the deployed password hash" in refused.stdout + refused.stderr
    new_password = secrets.token_urlsafe(12)
    write_operators(group_vars, new_password)
    pids = agent_pids()

    proc = invoke("secrets.rotate", "operators")

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert agent_pids() == pids
    wait_for(lambda: console.get(base + "/health", timeout=5).status_code == 200, 180,
             "the API to answer")
    with console.client(base, timeout=30) as client:
        old = client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})
        assert old.status_code == 401
    sign_in(base, new_password).close()
    for text in (proc.stdout, proc.stderr):
        assert new_password not in text and PASSWORDS["alice"] not in text
    PASSWORDS["alice"] = new_password


@pytest.mark.requirement("MEM_03")
def test_snapshot_key_rotates_and_old_snapshots_still_verify(api) -> None:
    on(ARK, "snapshot", "create", "--reason", "manual")
    on(ARK, "snapshot", "create", "--reason", "manual")
    listed = json.loads(on(ARK, "snapshot", "list", "--json"))
    good, tampered = listed[0]["id"], listed[1]["id"]
    manifest = f"/var/lib/ark/snapshots/{tampered}/manifest.json"
    on("sed", "-i", "s/\"manual\"/\"interval\"/", manifest)
    old_key = on("cat", "/etc/ark/snapshot.key").strip()
    pids = agent_pids()

    proc = invoke("secrets.rotate", "snapshot-key")

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    new_key = on("cat", "/etc/ark/snapshot.key").strip()
    assert new_key != old_key and "left refused" in proc.stdout
    for text in (proc.stdout, proc.stderr):
        assert old_key not in text and new_key not in text
    assert agent_pids() == pids
    assert lab_shell.on(HOST, ARK, "snapshot", "verify", good).returncode == 0
    assert lab_shell.on(HOST, ARK, "snapshot", "verify", tampered).returncode == 65
    # The interval timer's next run (the ark user, key as a credential) signs with the new key.
    started = lab_shell.on(HOST, "systemctl", "start", "ark-snapshot.service")
    assert started.returncode == 0, lab_shell.on(
        HOST, "journalctl", "-u", "ark-snapshot.service", "-n", "30", "--no-pager").stdout
    newest = json.loads(on(ARK, "snapshot", "list", "--json"))[0]["id"]
    assert lab_shell.on(HOST, ARK, "snapshot", "verify", newest).returncode == 0


# On the host, from the venv: which of each user's passwords log in, and the users of the
# clients Redis has now (as admin, with the new password). The passwords reach the host on
# ssh's stdin, never a command line.
LOGINS = """exec /opt/ark/venv/bin/python - <<'PY'
import json, redis
pairs = json.loads('''{pairs}''')
def logs_in(user, password):
    try:
        return bool(redis.Redis(port=6379, username=user, password=password).ping())
    except redis.AuthenticationError:
        return False
out = {{u: [logs_in(u, old), logs_in(u, new)] for u, (old, new) in pairs.items()}}
admin = redis.Redis(port=6379, username="admin", password=pairs["admin"][1])
print(json.dumps({{"logins": out, "clients": sorted({{c["user"] for c in admin.client_list()}})}}))
PY
"""


def redis_passwords() -> dict[str, str]:
    """The passwords `secrets.rotate redis` rolls: not a Redis set's link users (issue #20:
    replication, sentinel; no replicas here, so no such users in Redis either)."""
    d = LabPaths.default().inventory / ".secrets"
    out = {p.name.removeprefix("redis_password_"): p.read_text().strip()
           for p in d.glob("redis_password_*")
           if p.name.removeprefix("redis_password_") not in LINK_USERS}
    return {**out, "admin": (d / "redis_password").read_text().strip()}


@pytest.mark.requirement("SEC_01")
def test_redis_passwords_rotate_with_each_unit_restarted_alone(api) -> None:
    base, _gv = api
    wait_for(all_running, 120, "the agents to run")
    old = redis_passwords()
    assert {"kyle", "hrm", "api", "exporter", "admin"} <= set(old)
    pids = agent_pids()

    proc = invoke("secrets.rotate", "redis")

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    new = redis_passwords()
    assert set(new) == set(old) and all(new[u] != old[u] for u in old)
    for text in (proc.stdout, proc.stderr):
        assert not any(v in text for v in [*old.values(), *new.values()])
    assert "finish: only the new passwords log in" in proc.stdout
    after = agent_pids()
    assert set(after) == set(pids) and all(after[u] != pids[u] for u in pids)  # each restarted
    pairs = json.dumps({u: [old[u], new[u]] for u in old})
    state = json.loads(lab_shell.on(HOST, "sh", "-s", stdin=LOGINS.format(pairs=pairs),
                                    check=True).stdout.splitlines()[-1])
    assert state["logins"] == {u: [False, True] for u in old}  # the old ones are gone
    # Every agent, the API and the exporter came back as its own user, with the new password.
    wait_for(all_running, 120, "the agents to run again")
    wait_for(lambda: console.get(base + "/health", timeout=5).status_code == 200, 180,
             "the API to answer")
    clients = lambda: set(json.loads(lab_shell.on(  # noqa: E731
        HOST, "sh", "-s", stdin=LOGINS.format(pairs=pairs), check=True
    ).stdout.splitlines()[-1])["clients"])
    wait_for(lambda: {*AGENTS, "api", "exporter"} <= clients(), 120,
             "each component logged in as its own user")
    done = control_records()[-1]
    assert (done["who"], done["args"]["kind"], done["result"]) == (OPERATOR, "redis", "ok")
    # The files are what the roles render from .secrets/: the next deploy changes nothing
    # (no Redis restart, no unit restart).
    pids = agent_pids()
    out = invoke("deploy")
    assert out.returncode == 0, out.stdout[-3000:]
    assert f"{HOST} changed=0" in out.stdout
    assert agent_pids() == pids
