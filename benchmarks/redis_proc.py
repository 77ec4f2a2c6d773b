"""A throwaway redis-server for benchmarks: free loopback port, random password, own dir.

The password goes into a 0600 config file in the server's own (0700) directory, never onto
redis-server's command line, where any local user could read it in /proc.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProc:
    """`with RedisProc(*extra_args) as server:` a redis-server with no persistence unless the
    extra arguments ask for it (e.g. "--appendonly", "yes"); `cpu` pins it with taskset,
    `port` and `password` are chosen when not given."""

    def __init__(self, *extra: str, cpu: int | None = None, port: int | None = None,
                 password: str | None = None) -> None:
        self.extra = list(extra)
        self.cpu = cpu
        self.port = port or free_port()
        self.password = password or secrets.token_hex(16)
        self.dir = Path(tempfile.mkdtemp(prefix="ark-bench-redis-"))
        self.proc: subprocess.Popen | None = None

    def _config(self) -> Path:
        conf = self.dir / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"port {self.port}\nbind 127.0.0.1\nrequirepass {self.password}\n"
                     f'save ""\nappendonly no\ndir {self.dir}\ndaemonize no\n'
                     "loglevel warning\n")
        return conf

    def __enter__(self) -> RedisProc:
        pin = ["taskset", "-c", str(self.cpu)] if self.cpu is not None else []
        self.proc = subprocess.Popen([*pin, REDIS_SERVER, str(self._config()), *self.extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           decode_responses=True)

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
        shutil.rmtree(self.dir, ignore_errors=True)
