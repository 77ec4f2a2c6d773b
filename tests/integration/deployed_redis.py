"""A redis-server started with the ark_redis role's own config (issue #19): the role's
template rendered with its defaults (durability: appendonly, appendfsync, save schedule),
included last from a base file that mirrors Debian's redis.conf (dir, file names), as on a
deployed host. It can be SIGKILLed and restarted on the same port and directory."""

from __future__ import annotations

import hashlib
import secrets
import signal
import subprocess
import time
from pathlib import Path

import jinja2
import redis
import yaml
from conftest import REDIS_SERVER, REPO, RedisServer, free_port

from ark_runtime.bus.acl import component_names, render_acl_file

ROLE = REPO / "roles" / "ark_redis"


def role_defaults(**overrides: object) -> dict[str, object]:
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values.update(overrides)
    return values


def render_acl(password: str) -> str:
    """The role's ACL file, with `default` holding `password` as during an upgrade from a
    requirepass release (the clients here log in with the password alone)."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    hashes = {n: hashlib.sha256(secrets.token_bytes(16)).hexdigest()
              for n in [*component_names(), "admin"]}
    return render_acl_file(hashes, legacy_default_hash=digest)


def render_role_conf(port: int, password: str, **overrides: object) -> str:
    """roles/ark_redis/templates/ark.conf.j2 with the role's defaults, bound to loopback."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = env.from_string((ROLE / "templates" / "ark.conf.j2").read_text())
    # TLS off unless asked (the split topology's case; the role works it out from the fleet).
    # No replicas (issue #20) unless asked: tests/integration/sentinel_redis.py adds its own.
    overrides = {"__ark_redis_tls_on": False, "__ark_redis_plaintext_hosts": [],
                 "ark_redis_tls_port": 0, "__ark_redis_replicated": False, **overrides}
    values = role_defaults(ark_redis_port=port, ark_redis_password=password,
                           ark_redis_bind_addresses=["127.0.0.1"], **overrides)
    return template.render(ansible_managed="rendered by tests/integration/deployed_redis.py",
                           **values)


class DeployedRedis:
    def __init__(self, workdir: Path, **overrides: object) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, self.password = free_port(), secrets.token_hex(16)
        (self.dir / "ark.conf").write_text(render_role_conf(
            self.port, self.password,
            **{"ark_redis_aclfile_path": str(self.dir / "users.acl"), **overrides}))
        # Debian's redis.conf as far as persistence goes, then ARK's file, included last.
        (self.dir / "redis.conf").write_text(
            f"dir {self.dir}\ndbfilename dump.rdb\nappendfilename appendonly.aof\n"
            f"appenddirname appendonlydir\ndaemonize no\nloglevel warning\n"
            f"logfile {self.dir / 'redis.log'}\ninclude {self.dir / 'ark.conf'}\n")
        self.proc: subprocess.Popen | None = None
        self.kills = 0

    def start(self) -> RedisServer:
        # Written at each start: a test may hand this server another's password.
        (self.dir / "users.acl").write_text(render_acl(self.password))
        self.proc = subprocess.Popen([REDIS_SERVER, str(self.dir / "redis.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.server.client()
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return self.server
            except redis.BusyLoadingError:
                pass
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    raise AssertionError("redis-server exited: "
                                         + (self.dir / "redis.log").read_text()[-2000:]) from None
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not answer after a restart")
            time.sleep(0.05)

    @property
    def server(self) -> RedisServer:
        assert self.proc is not None
        return RedisServer(self.port, self.password, self.proc)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def rdb_saved(self) -> bool:
        return (self.dir / "dump.rdb").exists()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)

    def close(self) -> None:
        """Teardown: stop, or kill when Redis refuses to exit (a replica still writing its
        first AOF after a sync answers SIGTERM with "Writing initial AOF, can't exit")."""
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)
