"""Issue 22 §3, `invoke secrets.rotate redis`: the Redis host's half (ark_ops/fleet/remote/
redis_rotate.sh) run as root against a real redis-server loading the ACL file the role renders.

  * check changes nothing and refuses, naming the user, an ACL file without a user's password
    from .secrets/, and a Redis mid-upgrade;
  * overlap: old and new passwords both log in, in the running Redis and after a restart from
    the file, and a client connected before keeps working; running it twice changes nothing;
  * finish: only the new passwords log in, and the file is byte for byte what the role renders
    from the new passwords (the next deploy changes nothing and does not restart Redis).

The ARK hosts' half (each unit's file set in place): tests/unit/test_envfile_set.py; the whole
roll with the pipeline running: tests/e2e/test_secrets_rotate.py.
"""

from __future__ import annotations

import grp
import hashlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import REDIS_SERVER, free_port, wait_for

from ark_ops.fleet.remote import __file__ as _remote_init
from ark_ops.fleet.rotate_redis import hash_map
from ark_ops.pki import CertificateAuthority
from ark_runtime.bus.acl import render_acl_file, user_names

pytestmark = [
    pytest.mark.requirement("SEC_01"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the script runs as root (chown root:redis)"),
]

REPO = Path(__file__).resolve().parents[2]
REMOTE = Path(_remote_init).parent
VALIDATE = REPO / "roles" / "ark_redis" / "files" / "ark-redis-validate"
USERS = user_names(1)


def _hashes(passwords: dict[str, str]) -> dict[str, str]:
    return {u: hashlib.sha256(p.encode()).hexdigest() for u, p in passwords.items()}


class RotatingRedis:
    """A Redis loading the role's ACL file; with `tls`, as a Redis host whose clients are on
    other hosts (issue #19 §4): plaintext port 0, TLS with the fleet CA's certificates."""

    def __init__(self, workdir: Path, tls: bool = False) -> None:
        self.dir = workdir
        self.port = free_port()
        self.tls_dir = self._certificates() if tls else None
        self.old = {u: secrets.token_hex(20) for u in USERS}
        self.new = {u: secrets.token_hex(20) for u in USERS}
        self.aclfile = workdir / "ark-users.acl"
        self.aclfile.write_text(render_acl_file(_hashes(self.old)))
        self.proc: subprocess.Popen | None = None
        self.start()

    def _certificates(self) -> Path:
        tls = self.dir / "tls"
        tls.mkdir()
        issued = CertificateAuthority(self.dir / "ca").issue("redis-host", ["127.0.0.1"])
        for name, text in (("ca.crt", issued.ca_pem), ("redis.crt", issued.cert_pem),
                           ("redis.key", issued.key_pem)):
            (tls / name).write_text(text)
        # The role's ark.conf says where TLS listens; the script reads it from there.
        (self.dir / "ark.conf").write_text(f"port 0\ntls-port {self.port}\n")
        return tls

    def start(self) -> None:
        listen = ["--port", str(self.port)]
        if self.tls_dir is not None:
            t = self.tls_dir
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "yes",
                      "--tls-cert-file", str(t / "redis.crt"), "--tls-key-file",
                      str(t / "redis.key"), "--tls-ca-cert-file", str(t / "ca.crt")]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *listen, "--bind", "127.0.0.1", "--aclfile",
             str(self.aclfile), "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: self.logs_in("admin", self.old["admin"])
                 or self.logs_in("admin", self.new["admin"]), 15, what="redis-server")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(10)

    def client(self, user: str, password: str) -> redis.Redis:
        tls = {}
        if self.tls_dir is not None:
            t = self.tls_dir
            tls = {"ssl": True, "ssl_ca_certs": str(t / "ca.crt"),
                   "ssl_certfile": str(t / "redis.crt"), "ssl_keyfile": str(t / "redis.key")}
        return redis.Redis(host="127.0.0.1", port=self.port, username=user, password=password,
                           **tls)

    def logs_in(self, user: str, password: str) -> bool:
        try:
            return bool(self.client(user, password).ping())
        except (redis.AuthenticationError, redis.ResponseError):
            return False
        except redis.ConnectionError:
            return False

    def run(self, phase: str, admin: str, hashes: bytes | None = None
            ) -> subprocess.CompletedProcess:
        """The script as the control node sends it: the prelude first, then the phase."""
        (self.dir / "map").write_bytes(hashes if hashes is not None
                                       else hash_map(self.old, self.new))
        auth = self.dir / "auth"
        auth.write_text(admin + "\n")
        text = (REMOTE / "prelude.sh").read_text() + (REMOTE / "redis_rotate.sh").read_text()
        env = {**os.environ, "ARK_REDIS_VALIDATE": str(VALIDATE),
               "ARK_REDIS_ARK_CONF": str(self.dir / "ark.conf")}
        # Under TLS the control node still passes the inventory's plaintext port (closed).
        port = self.port
        if self.tls_dir is not None:
            env["ARK_REDIS_SERVER_TLS_DIR"] = str(self.tls_dir)
            port = free_port()
        return subprocess.run(
            ["sh", "-c", text, "redis_rotate.sh", phase, str(self.dir / "map"), str(auth),
             str(self.aclfile), str(port)],
            capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def rotating(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RotatingRedis]:
    try:
        grp.getgrnam("redis")
    except KeyError:
        pytest.fail("no `redis` group: redis-server is installed by ./ops (APT_PACKAGES)")
    server = RotatingRedis(tmp_path, tls=getattr(request, "param", "plain") == "tls")
    yield server
    server.stop()


def _no_secret_in(server: RotatingRedis, proc: subprocess.CompletedProcess) -> None:
    for value in [*server.old.values(), *server.new.values()]:
        assert value not in proc.stdout + proc.stderr


def test_check_changes_nothing_and_names_a_user_whose_password_is_not_in_the_file(
        rotating: RotatingRedis) -> None:
    before = rotating.aclfile.read_bytes()
    ok = rotating.run("check", rotating.old["admin"])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith(f"{len(USERS) + 1} users, ready")  # and `default`
    drifted = dict(rotating.old, kyle="not-what-the-file-holds")
    refused = rotating.run("check", rotating.old["admin"], hash_map(drifted, rotating.new))
    assert refused.returncode == 65
    assert "does not hold kyle's password from .secrets/: run invoke deploy first" \
        in refused.stderr
    wrong_admin = rotating.run("check", "not-the-admin-password")
    assert wrong_admin.returncode == 65 and "does not take the admin password" \
        in wrong_admin.stderr
    assert rotating.aclfile.read_bytes() == before
    _no_secret_in(rotating, refused)


def test_check_refuses_a_redis_mid_upgrade(rotating: RotatingRedis) -> None:
    Path(f"{rotating.aclfile}.legacy-hosts").write_text("ark-lab-2\n")
    refused = rotating.run("check", rotating.old["admin"])
    assert refused.returncode == 65
    assert "hosts mid-upgrade (ark-lab-2 )" in refused.stderr


@pytest.mark.parametrize("rotating", ["plain", "tls"], indirect=True)
def test_overlap_then_finish_moves_every_user_to_its_new_password(
        rotating: RotatingRedis) -> None:
    before_roll = rotating.client("hrm", rotating.old["hrm"])
    assert before_roll.ping()

    for _ in range(2):  # a second run changes nothing
        overlap = rotating.run("overlap", rotating.old["admin"])
        assert overlap.returncode == 0, overlap.stderr
        _no_secret_in(rotating, overlap)
    text = rotating.aclfile.read_text()
    for user in USERS:
        assert rotating.logs_in(user, rotating.old[user]), user
        assert rotating.logs_in(user, rotating.new[user]), user
        assert text.count(_hashes(rotating.new)[user]) == 1, user
    assert before_roll.ping()  # nobody was disconnected
    st = rotating.aclfile.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, grp.getgrnam("redis").gr_gid,
                                                          0o640)

    rotating.stop()  # Redis restarted mid-roll reads both passwords from the file
    rotating.start()
    assert all(rotating.logs_in(u, rotating.old[u]) and rotating.logs_in(u, rotating.new[u])
               for u in USERS)

    finish = rotating.run("finish", rotating.new["admin"])
    assert finish.returncode == 0, finish.stderr
    assert finish.stdout.strip().endswith("only the new passwords log in")
    for user in USERS:
        assert not rotating.logs_in(user, rotating.old[user]), user
        assert rotating.logs_in(user, rotating.new[user]), user
    assert rotating.aclfile.read_text() == render_acl_file(_hashes(rotating.new))
    _no_secret_in(rotating, finish)


def test_finish_without_the_overlap_is_refused_and_changes_nothing(
        rotating: RotatingRedis) -> None:
    before = rotating.aclfile.read_bytes()
    refused = rotating.run("finish", rotating.old["admin"])
    assert refused.returncode == 65 and "the overlap phase did not run" in refused.stderr
    assert rotating.aclfile.read_bytes() == before
    assert all(rotating.logs_in(u, rotating.old[u]) for u in USERS)
