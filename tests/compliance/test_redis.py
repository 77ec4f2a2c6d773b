"""SEC_01: Redis listens only on the host's addresses and requires its password; each
component logs in as its own Redis user (issue #19 §3) and none can FLUSHALL or CONFIG SET.

The passwords never cross the command line and never reach Python: the host's shell reads
them from the root-only env files and hands them to redis-cli through its environment
(REDISCLI_AUTH), so a failing check cannot print one.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest

from ark_ops.fleet.redis_cli import as_root_tools
from ark_runtime.bus.acl import render_acl_file, user_names

pytestmark = [pytest.mark.requirement("SEC_01"), pytest.mark.runs_on("ark_redis")]

ENV_FILE = "/etc/ark/env/infrastructure.env"
USERS_DIR = "/etc/ark/env/redis"
# roles/ark_redis: the hosts that still log in with the shared password, mid-upgrade only.
LEGACY_NOTE = "/etc/redis/ark-users.acl.legacy-hosts"
# Expanded on the host: the command line holds the variable's name, not its value.
# infrastructure.env logs in as the root tools' user (admin).
AS_ADMIN = as_root_tools(ENV_FILE)
HASH = re.compile(r"#[0-9a-f]{64}")
SELECTOR = re.compile(r"\(([^)]*)\)")


def _rules(acl_list: list[str]) -> dict[str, tuple]:
    """{user: (its rules, its selectors' rules)}, each a set of words: Redis 7.0 lists a
    user's per-command rules in hash-table order, which differs between two servers."""
    out = {}
    for line in acl_list:
        selectors = sorted(sorted(x.split()) for x in SELECTOR.findall(line))
        words = HASH.sub("#HASH", SELECTOR.sub("", line)).split()
        out[words[1]] = (frozenset(words[2:]), selectors)
    return out


@pytest.fixture(scope="module")
def redis_addr(hostvars):
    return hostvars["ansible_host"], int(hostvars.get("ark_redis_port", 6379))


def test_redis_listens_on_loopback_and_host_address_only(host, redis_addr):
    addr, port = redis_addr
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert host.socket(f"tcp://{addr}:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_redis_refuses_commands_without_password(host, redis_addr):
    addr, port = redis_addr
    out = host.run("redis-cli -h %s -p %s ping", addr, str(port))
    assert "NOAUTH" in out.stdout + out.stderr


def test_redis_refuses_a_wrong_password(host, redis_addr):
    addr, port = redis_addr
    out = host.run("REDISCLI_AUTH=not-the-password redis-cli -h %s -p %s ping", addr, str(port))
    assert "PONG" not in out.stdout
    assert "WRONGPASS" in out.stdout + out.stderr or "invalid" in (out.stdout + out.stderr)


@pytest.mark.runs_on("ark")
def test_deployed_password_is_long(host):
    length = host.check_output(f"set -a; . {ENV_FILE}; set +a; " + 'echo "${#ARK_REDIS_PASSWORD}"')
    assert int(length) >= 32, f"ARK_REDIS_PASSWORD has {length} characters, expected 32 or more"


def test_redis_accepts_the_deployed_password(host, redis_addr):
    addr, port = redis_addr
    out = host.run(AS_ADMIN + "-h %s -p %s ping", addr, str(port))
    assert out.stdout.strip() == "PONG", f"redis-cli ping answered {out.stdout + out.stderr!r}"


def _acl_list_of(host, acl_text: str) -> list[str]:
    """ACL LIST of a scratch redis-server (unix socket only) loading `acl_text`: the same
    build on the same host writes the declaration's rules the way it writes the deployed."""
    script = f"""set -eu
d=$(mktemp -d); trap 'kill "$(cat "$d/pid")" 2>/dev/null || :; rm -rf "$d"' EXIT
printf '%s' {shlex.quote(acl_text)} > "$d/users.acl"
redis-server --port 0 --unixsocket "$d/s" --aclfile "$d/users.acl" --save '' --appendonly no \
  --dir "$d" --daemonize yes --logfile "$d/log" --pidfile "$d/pid"
i=0; while [ ! -S "$d/s" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
REDISCLI_AUTH=probe-password-not-a-secret redis-cli -s "$d/s" --user probe ACL LIST
"""
    out = host.run("sh -c %s", script)
    assert out.rc == 0, out.stderr[-2000:]
    return [line for line in out.stdout.splitlines() if not line.startswith("user probe ")]


def test_acl_list_matches_the_declaration(host, hostvars, redis_addr):
    _addr, port = redis_addr
    shards = int(hostvars.get("ark_runtime_joey_shards", 1))
    hashes = {n: f"{i:064x}" for i, n in enumerate(user_names(shards))}
    probe = "user probe on >probe-password-not-a-secret ~* &* +@all\n"
    expected = _acl_list_of(host, render_acl_file(hashes, shards) + probe)
    deployed = host.run(AS_ADMIN + "-p %s ACL LIST", str(port))
    assert deployed.rc == 0, deployed.stderr[-500:]
    got = _rules(deployed.stdout.splitlines())
    want = _rules(expected)
    assert sorted(got) == sorted(want)  # the same users
    differ = sorted(user for user in want if user != "default" and got[user] != want[user])
    assert differ == [], f"ACL rules differ from the declaration for {differ}"
    if "off" in got["default"][0]:
        assert got["default"] == want["default"]
        return
    # On only during a rolling upgrade from a one-password release, and then named.
    note = host.file(LEGACY_NOTE)
    assert note.exists, "the default user is on, and no upgrade is under way"
    pytest.xfail("mid-upgrade: `default` keeps the shared password for "
                 + ", ".join(note.content_string.split()) + "; deploy again once all are on "
                 "this release")


# Runs with the venv's redis-py (an agents-only host need not have redis-cli), logging in
# with the settings the unit gets: infrastructure.env, then its own user's file over it.
AS_COMPONENT = """import json, redis
from ark_runtime.bus.streams import connect
r = connect()
out = {"user": r.client_info()["user"]}
for words in (["FLUSHALL"], ["CONFIG", "SET", "dir", "/tmp"]):
    try:
        r.execute_command(*words)
        out[" ".join(words)] = "ALLOWED"
    except redis.exceptions.NoPermissionError:
        out[" ".join(words)] = "NOPERM"
    except redis.exceptions.ResponseError as exc:
        out[" ".join(words)] = f"other error: {exc}"[:200]
print(json.dumps(out))"""


@pytest.mark.runs_on("ark")
def test_each_component_logs_in_as_itself_and_cannot_flush_or_reconfigure(host):
    if not host.file(USERS_DIR).exists:
        # Deployed while the Redis host had no users yet (mid-upgrade): the role then writes
        # no ARK_REDIS_USERNAME either. Anything else without the users is a failure.
        username = host.run(f"grep -c '^ARK_REDIS_USERNAME=' {ENV_FILE}").stdout.strip()
        assert username == "0", f"{USERS_DIR} is missing"
        pytest.xfail("mid-upgrade: the Redis host has no per-component users yet; this "
                     "host's units use the shared password until the next deploy")
    users = host.check_output(f"ls {USERS_DIR}").split()
    assert "exporter.env" in users, users
    for name in users:
        path = f"{USERS_DIR}/{name}"
        assert host.file(path).user == "root" and host.file(path).mode == 0o600, path
        out = host.run(f"set -a; . {ENV_FILE}; . {path}; set +a; "
                       "/opt/ark/venv/bin/python -c %s", AS_COMPONENT)
        assert out.rc == 0, (name, out.stderr[-500:])
        got = json.loads(out.stdout.strip().splitlines()[-1])
        # Logged in as itself (a refusal below must not be a failed login) ...
        assert got.pop("user") == name.removesuffix(".env"), name
        # ... and refused what no component may do.
        assert got == dict.fromkeys(got, "NOPERM") and len(got) == 2, (name, got)
