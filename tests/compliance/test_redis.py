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
from dataclasses import dataclass

import pytest

from ark_ops.fleet.redis_cli import as_root_tools
from ark_ops.verify.report import NOT_HERE
from ark_runtime.bus.acl import LINK_USERS, render_acl_file, user_names

pytestmark = [pytest.mark.requirement("SEC_01"), pytest.mark.runs_on("ark_redis")]

ENV_FILE = "/etc/ark/env/infrastructure.env"
USERS_DIR = "/etc/ark/env/redis"
# roles/ark_redis: the hosts that still log in with the shared password, mid-upgrade only.
LEGACY_NOTE = "/etc/redis/ark-users.acl.legacy-hosts"
REDIS_CONF = "/etc/redis/ark.conf"
REDIS_TLS = "/etc/redis/tls"
# ... and those that still reach it in plaintext, mid-upgrade only (issue #19 §4).
PLAINTEXT_NOTE = "/etc/redis/ark.conf.plaintext-hosts"
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


@dataclass(frozen=True)
class Listener:
    """How the deployed Redis takes clients, read from its own config (roles/ark_redis)."""
    addr: str
    port: int  # plaintext; 0 = closed
    tls_port: int  # 0 = TLS off

    @property
    def client_port(self) -> int:
        return self.tls_port or self.port

    @property
    def tls(self) -> str:
        """redis-cli's TLS words, with Redis's own certificate (a client of the fleet CA)."""
        return (f"--tls --cacert {REDIS_TLS}/ca.crt --cert {REDIS_TLS}/redis.crt "
                f"--key {REDIS_TLS}/redis.key " if self.tls_port else "")


@pytest.fixture(scope="module")
def redis_addr(host, hostvars) -> Listener:
    # Module-scoped, so set up before the runs_on guard: say the same thing it would.
    if "ark_redis" not in hostvars.get("group_names", []):
        pytest.skip(f"{NOT_HERE}{hostvars['inventory_hostname']} is not in ark_redis")
    conf = host.file(REDIS_CONF).content_string
    ports = dict(re.findall(r"^(port|tls-port) (\d+)$", conf, re.MULTILINE))
    return Listener(hostvars["ansible_host"], int(ports.get("port", 6379)),
                    int(ports.get("tls-port", 0)))


def test_redis_listens_on_loopback_and_host_address_only(host, redis_addr):
    ports = [p for p in (redis_addr.port, redis_addr.tls_port) if p]
    assert ports, f"{REDIS_CONF} opens no port"
    for port in ports:
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening, port
        assert host.socket(f"tcp://{redis_addr.addr}:{port}").is_listening, port
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, port


def test_redis_refuses_commands_without_password(host, redis_addr):
    out = host.run("redis-cli " + redis_addr.tls + "-h %s -p %s ping", redis_addr.addr,
                   str(redis_addr.client_port))
    assert "NOAUTH" in out.stdout + out.stderr


def test_redis_refuses_a_wrong_password(host, redis_addr):
    out = host.run("REDISCLI_AUTH=not-the-password redis-cli " + redis_addr.tls
                   + "-h %s -p %s ping", redis_addr.addr, str(redis_addr.client_port))
    assert "PONG" not in out.stdout
    assert "WRONGPASS" in out.stdout + out.stderr or "invalid" in (out.stdout + out.stderr)


def test_plaintext_is_closed_while_tls_is_on(host, hostvars, redis_addr, redis_remote_clients,
                                            redis_set):
    """Issue #19 §4: with another host using this Redis, only TLS reaches it: the plaintext
    port is closed (open only while the role's note names a host of an older release), and
    plain words sent to the TLS port get no answer from Redis."""
    if not redis_addr.tls_port:
        assert hostvars.get("ark_redis_tls", "auto") == "false" or not redis_remote_clients, \
            f"{redis_remote_clients} use this Redis over the network, and TLS is off"
        assert hostvars.get("ark_redis_tls", "auto") == "false" or len(redis_set) == 1, \
            f"this Redis replicates with {redis_set} over the network, and TLS is off"
        # Not a check left undone: with no client elsewhere there is nothing to encrypt.
        pytest.skip(f"{NOT_HERE}TLS is off: no other host uses this Redis (ark_redis_tls: auto)")
    out = host.run("REDISCLI_AUTH=x redis-cli -h %s -p %s ping", redis_addr.addr,
                   str(redis_addr.tls_port))
    assert "PONG" not in out.stdout and "NOAUTH" not in out.stdout + out.stderr \
        and "WRONGPASS" not in out.stdout + out.stderr, out.stdout + out.stderr
    if redis_addr.port:
        note = host.file(PLAINTEXT_NOTE)
        assert note.exists, f"plaintext port {redis_addr.port} is open, and no host needs it"
        pytest.xfail("mid-upgrade: the plaintext port stays open for "
                     + ", ".join(note.content_string.split()) + "; deploy this host again "
                     "once they are on this release")


@pytest.mark.runs_on("ark")
def test_deployed_password_is_long(host):
    length = host.check_output(f"set -a; . {ENV_FILE}; set +a; " + 'echo "${#ARK_REDIS_PASSWORD}"')
    assert int(length) >= 32, f"ARK_REDIS_PASSWORD has {length} characters, expected 32 or more"


def test_redis_accepts_the_deployed_password(host, redis_addr):
    out = host.run(AS_ADMIN + '-h %s -p "$ARK_REDIS_PORT" ping', redis_addr.addr)
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


def test_acl_list_matches_the_declaration(host, hostvars, redis_set):
    shards = int(hostvars.get("ark_runtime_joey_shards", 1))
    # Issue #20: a set with replicas has its link users too (replication, sentinel).
    names = [*user_names(shards), *(LINK_USERS if len(redis_set) > 1 else ())]
    hashes = {n: f"{i:064x}" for i, n in enumerate(names)}
    probe = "user probe on >probe-password-not-a-secret ~* &* +@all\n"
    expected = _acl_list_of(host, render_acl_file(hashes, shards) + probe)
    deployed = host.run(AS_ADMIN + '-p "$ARK_REDIS_PORT" ACL LIST')
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


# Issue #19 §4: from this host, with the root tools' settings (infrastructure.env).
PLAIN_AND_TLS = """import json, sys, redis
from ark_runtime.config import redis_settings
from ark_runtime.bus.streams import connect
s = redis_settings()
out = {"tls": s.ssl, "plain": {}}
for port in {s.port, int(sys.argv[1])}:
    try:
        redis.Redis(host=s.host, port=port, username=s.username, password=s.password,
                    socket_connect_timeout=5, socket_timeout=5).ping()
        out["plain"][port] = "answered"
    except redis.exceptions.ConnectionError:
        out["plain"][port] = "refused"
    except redis.exceptions.RedisError as exc:
        out["plain"][port] = "other: " + type(exc).__name__
out["tls_ping"] = bool(connect().ping())
print(json.dumps(out))"""
TLS_DIR = "/etc/ark/tls"
MIN_DAYS_LEFT = 14  # a deploy renews 30 days before expiry (ark_tls_renew_days)


def root_tools_env(host) -> dict[str, str]:
    """Where infrastructure.env points the root tools, as the shell reads it (values quoted)."""
    out = host.check_output(f"set -a; . {ENV_FILE}; set +a; " + 'printf "%s\\n" '
                            '"$ARK_REDIS_HOST" "$ARK_REDIS_PORT" "${ARK_REDIS_TLS_DIR:-}"')
    redis_host, port, tls_dir = (out.splitlines() + ["", "", ""])[:3]
    return {"host": redis_host, "port": port, "tls_dir": tls_dir}


@pytest.mark.runs_on("ark")
def test_a_redis_on_another_host_takes_tls_only(host, hostvars):
    env = root_tools_env(host)
    if re.match(r"(127\.|::1$|localhost$)", env["host"]):
        pytest.skip(f"{NOT_HERE}this host's Redis is its own, over loopback")
    assert env["tls_dir"], f"Redis is on another host ({env['host']}), and {ENV_FILE} has no TLS"
    out = host.run(f"set -a; . {ENV_FILE}; set +a; /opt/ark/venv/bin/python -c %s %s",
                   PLAIN_AND_TLS, str(hostvars.get("ark_redis_port", 6379)))
    assert out.rc == 0, out.stderr[-800:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["tls"] and got["tls_ping"], got
    plain = got["plain"]
    assert plain.pop(env["port"]) == "refused", got  # plaintext words to the TLS port: no answer
    if set(plain.values()) != {"refused"}:
        # Mid-upgrade the Redis host keeps its plaintext port for hosts of an older release;
        # its own check (test_plaintext_is_closed_while_tls_is_on) holds it to that note.
        pytest.xfail(f"the Redis host still answers plaintext ({got}): mid-upgrade, until it "
                     "is deployed again after the last host")


@pytest.mark.runs_on("ark")
def test_the_tls_certificate_comes_from_the_fleet_ca_with_days_left(host):
    if not root_tools_env(host)["tls_dir"]:
        pytest.skip(f"{NOT_HERE}TLS is off for this host's Redis (it has no client elsewhere)")
    assert host.file(f"{TLS_DIR}/host.crt").exists, f"TLS is on and {TLS_DIR}/host.crt is missing"
    key = host.file(f"{TLS_DIR}/host.key")
    assert (key.user, key.mode) == ("root", 0o600), (key.user, oct(key.mode))
    verified = host.run(f"openssl verify -CAfile {TLS_DIR}/ca.crt {TLS_DIR}/host.crt")
    assert verified.rc == 0, verified.stdout + verified.stderr
    end = host.check_output(f"openssl x509 -in {TLS_DIR}/host.crt -noout -enddate")
    left = host.run(f"openssl x509 -in {TLS_DIR}/host.crt -noout "
                    f"-checkend {MIN_DAYS_LEFT * 86400}")
    assert left.rc == 0, f"the certificate expires within {MIN_DAYS_LEFT} days ({end}): deploy " \
                         "again to renew it"
