"""A replicated Redis watched by three Sentinels, on loopback (issue #20): a primary and a
replica started with the ark_redis role's own config (tests/integration/deployed_redis.py:
AOF on, the role's ACL file), and three `redis-server --sentinel` processes monitoring them
under one master name with quorum 2. Either server can be SIGKILLed and started again; the
Sentinels then promote the replica, and reconfigure the old primary as its replica when it
comes back."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis
from conftest import REDIS_SERVER, free_port
from deployed_redis import DeployedRedis

MASTER = "ark"
DOWN_AFTER_MS = 1000  # how long a primary may not answer before a Sentinel calls it down


class SentinelRedis:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.servers = [DeployedRedis(workdir / "redis-a"), DeployedRedis(workdir / "redis-b")]
        self.password = self.servers[0].password
        primary = self.servers[0]
        for server in self.servers:
            server.password = self.password  # one ACL file and login for both
            # Replication logs in as the shared login; the replica follows the primary.
            with (server.dir / "redis.conf").open("a") as conf:
                conf.write(f"masterauth {self.password}\n")
                if server is not primary:
                    conf.write(f"replicaof 127.0.0.1 {primary.port}\n")
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen] = []

    @property
    def addresses(self) -> str:
        """ARK_REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)

    def start(self) -> None:
        for server in self.servers:
            server.start()
        self._wait(lambda: self.role(self.servers[1]) == "slave"
                   and self.client(self.servers[1]).info("replication")
                   .get("master_link_status") == "up", 30, "the replica to sync")
        for n, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"sentinel-{n}.conf"  # Sentinel rewrites its own file
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {self.dir}\n"
                f"logfile {self.dir / f'sentinel-{n}.log'}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.servers[0].port} 2\n"
                f"sentinel auth-pass {MASTER} {self.password}\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
                f"sentinel parallel-syncs {MASTER} 1\n")
            self.sentinels.append(subprocess.Popen(
                [REDIS_SERVER, str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # Each Sentinel has found the other two and the replica before anything is tried.
        self._wait(lambda: all(self._sentinel_sees_all(p) for p in self.sentinel_ports), 60,
                   "the Sentinels to find each other and the replica")

    def _sentinel_sees_all(self, port: int) -> bool:
        try:
            s = redis.Redis(port=port, decode_responses=True, socket_timeout=2)
            return (len(s.sentinel_sentinels(MASTER)) == 2
                    and len(s.sentinel_slaves(MASTER)) == 1)
        except redis.RedisError:
            return False

    def primary_port(self) -> int | None:
        """The primary's port as the Sentinels' majority names it."""
        seen = []
        for port in self.sentinel_ports:
            try:
                s = redis.Redis(port=port, decode_responses=True, socket_timeout=2)
                seen.append(int(s.sentinel_get_master_addr_by_name(MASTER)[1]))
            except (redis.RedisError, TypeError):
                pass
        return max(set(seen), key=seen.count) if len(seen) >= 2 else None

    def primary(self) -> DeployedRedis:
        port = self.primary_port()
        return next(s for s in self.servers if s.port == port)

    def client(self, server: DeployedRedis) -> redis.Redis:
        return redis.Redis(port=server.port, password=self.password, decode_responses=True,
                           socket_timeout=5)

    def role(self, server: DeployedRedis) -> str | None:
        try:
            return self.client(server).info("replication")["role"]
        except redis.RedisError:
            return None

    @staticmethod
    def _wait(pred, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.sentinels:
            proc.send_signal(signal.SIGTERM)
        for proc in self.sentinels:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for server in self.servers:
            server.close()
