"""A real redis-server on a free loopback port (with a password), and real agent processes.

Nothing here is mocked: agents run as `python -m ark_runtime.cli agent NAME` subprocesses
with their own state/log/run dirs, and each gets a real sd_notify socket so the tests see
READY=1 / WATCHDOG=1 / STOPPING=1 exactly as systemd would.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.02,
             what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class RedisServer:
    port: int
    password: str
    proc: subprocess.Popen

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           decode_responses=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    workdir = Path(tempfile.mkdtemp(prefix="ark-redis-"))
    port, password = free_port(), secrets.token_hex(16)
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password,
         "--save", "", "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no",
         "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    server = RedisServer(port, password, proc)
    client = server.client()

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            assert proc.poll() is None, f"redis-server exited: {proc.stderr.read()!r}"
            return False

    wait_for(up, 10, what="redis-server to answer PING")
    yield server
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def r(redis_server: RedisServer) -> redis.Redis:
    client = redis_server.client()
    client.flushall()
    return client


class NotifySocket:
    """A stand-in for systemd's $NOTIFY_SOCKET that records every datagram."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while not self._stop:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def seen(self, state: str) -> bool:
        return any(state in m for m in self.messages)

    def close(self) -> None:
        self._stop = True
        self._thread.join(1)
        self.sock.close()


@dataclass
class AgentProc:
    name: str
    proc: subprocess.Popen
    notify: NotifySocket
    env: dict[str, str]
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n"
                                     f"{self.stderr()[-3000:]}")
            return self.notify.seen("READY=1")

        wait_for(ready, timeout, what=f"{self.name} READY=1")


@dataclass
class Lab:
    """Per-test world: directories ("hosts") and the agent processes started in it."""

    redis: RedisServer
    root: Path
    procs: list[AgentProc] = field(default_factory=list)

    def host_dirs(self, host: str) -> dict[str, str]:
        base = self.root / host
        dirs = {"ARK_STATE_DIR": base / "state", "ARK_LOG_DIR": base / "log",
                "ARK_RUN_DIR": base / "run", "ARK_FEED_DIR": self.root / "feeds"}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        return {k: str(v) for k, v in dirs.items()}

    def env(self, host: str = "host1", **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ARK_", "NOTIFY_SOCKET", "WATCHDOG_"))}
        env.update(self.host_dirs(host))
        env.update({
            "ARK_REDIS_HOST": "127.0.0.1", "ARK_REDIS_PORT": str(self.redis.port),
            "ARK_REDIS_PASSWORD": self.redis.password,
            "ARK_BUS_BLOCK_MS": "100", "ARK_BUS_CLAIM_EVERY_S": "0.2",
            "WATCHDOG_USEC": "2000000", "PYTHONPATH": str(REPO),
        })
        env.update(extra)
        return env

    def start(self, name: str, host: str = "host1", wait: bool = True,
              **extra: str) -> AgentProc:
        env = self.env(host, **extra)
        sockdir = Path(tempfile.mkdtemp(prefix="arkn-"))  # AF_UNIX paths are short
        notify = NotifySocket(sockdir / "notify")
        env["NOTIFY_SOCKET"] = str(notify.path)
        stderr_path = Path(env["ARK_LOG_DIR"]) / f"{name}.{len(self.procs)}.stderr"
        with stderr_path.open("wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "ark_runtime.cli", "agent", name],
                                    env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        agent = AgentProc(name, proc, notify, env, stderr_path)
        self.procs.append(agent)
        if wait:
            agent.wait_ready()
        return agent

    def stop(self, agent: AgentProc, timeout: float = 15) -> int:
        agent.proc.send_signal(signal.SIGTERM)
        return agent.proc.wait(timeout)

    def close(self) -> None:
        for a in self.procs:
            if a.proc.poll() is None:
                a.proc.kill()
                a.proc.wait(5)
            a.notify.close()
            with contextlib.suppress(OSError):
                shutil.rmtree(a.notify.path.parent)


@pytest.fixture
def lab(r: redis.Redis, redis_server: RedisServer, tmp_path: Path) -> Iterator[Lab]:
    world = Lab(redis_server, tmp_path)
    yield world
    world.close()


def start_redis(workdir: Path, port: int, password: str, *aof: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password,
         "--save", "", "--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning",
         *aof],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=password)

    def up() -> bool:
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.BusyLoadingError):
            assert proc.poll() is None, "redis-server exited"
            return False

    wait_for(up, 10, what="redis-server to answer PING")
    return proc


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Callable[[], None],
                                                   Callable[[], None]]]:
    """A private redis-server with an fsync-always AOF, and down()/up() to cut it (SIGKILL)
    and bring it back on the same port: an outage that loses nothing acknowledged."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    port, password = free_port(), secrets.token_hex(8)
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    server = RedisServer(port, password, start_redis(workdir, port, password, *aof))

    def down() -> None:
        server.proc.kill()
        server.proc.wait(5)

    def up() -> None:
        server.proc = start_redis(workdir, port, password, *aof)

    yield server, down, up
    server.proc.kill()
    server.proc.wait(5)


@pytest.fixture
def replicated(tmp_path):
    """Issue #20: a primary and a replica behind three Sentinels (sentinel_redis.py)."""
    from sentinel_redis import SentinelRedis  # it imports this module

    world = SentinelRedis(tmp_path / "redis")
    try:
        world.start()
        yield world
    finally:
        world.stop()
