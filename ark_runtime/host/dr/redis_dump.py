"""REC_03 / issue #19 §5: the host's Redis in the DR bundle.

Only a Redis host has a Redis to dump: the ark_redis role renders `/etc/redis/ark.conf` there
and removes it everywhere else, so that file decides (format.Sources.redis_conf). Paths come
from the deployed config itself (Debian's redis.conf and the files it includes, last one
wins): `dir`, `dbfilename`, `appenddirname`, `appendonly`, `port`.

Bundle: BGSAVE on the live Redis, wait for that save to finish, copy `dump.rdb` (a finished
save is renamed into place, so the copy is one whole save), then load the copy in a scratch
redis-server (no TCP port, a private unix socket) to prove it loads and to record, exactly,
what it holds: every stream's length and consumer groups go into the manifest.

Restore, before the agents start: stop redis-server (its shutdown save lands in dump.rdb, kept
as dump.rdb.before-dr-restore), put the bundle's RDB in Redis's dir (owned like the dir:
redis:redis 0660 on Debian), set the old AOF aside, load it in a scratch redis-server with
`appendonly no` and, when the deployed config says `appendonly yes`, `CONFIG SET appendonly
yes` so Redis writes the AOF from the loaded data (started straight into `appendonly yes` with
no AOF, Redis 7 starts EMPTY and ignores dump.rdb: tests/integration/test_redis_aof_switch.py),
then start redis-server and check that its streams and groups are the manifest's.

The RDB holds the bus's data only (streams, cursors, control keys), no config: no password or
ACL user is in it. Credentials for the live Redis come from one place, `live_settings()`
(the host's settings; issue #19 §3 will point it at the operators' admin user).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis

from ark_runtime.config import RedisSettings, redis_settings
from ark_runtime.host.dr.format import BundleError
from ark_runtime.settings import SettingsError, child_environment

REDIS_MEMBER = "redis/dump.rdb"
PRE_RESTORE_SUFFIX = ".before-dr-restore"
REDIS_SERVICE = "redis-server.service"
# Never handed to a child process.
SECRET_VARIABLES = ("ARK_REDIS_PASSWORD", "ARK_REDIS_URL")
WAIT_S = 300.0  # a save, a load or an AOF rewrite of a large bus; generous on purpose


class RedisDumpError(BundleError):
    """The Redis part of a bundle or restore failed; the message says which step."""


@dataclass(frozen=True)
class RedisFiles:
    """Where the deployed Redis keeps its data, read from its config files."""

    config: Path
    dir: Path
    dbfilename: str
    appenddirname: str
    appendonly: bool
    port: int
    tls_port: int = 0  # issue #19 §4: TLS on (the plaintext port is 0, or kept mid-upgrade)

    @property
    def rdb(self) -> Path:
        return self.dir / self.dbfilename

    @property
    def aof_dir(self) -> Path:
        return self.dir / self.appenddirname

    @classmethod
    def from_config(cls, config: Path) -> RedisFiles:
        values = _read_config(config, {}, depth=0)
        directory = Path(values.get("dir", ""))
        if not directory.is_absolute():
            raise RedisDumpError(f"{config}: Redis 'dir' must be an absolute path, "
                                 f"found {values.get('dir')!r}")
        ports = {}
        for name, default in (("port", "6379"), ("tls-port", "0")):
            try:
                ports[name] = int(values.get(name, default))
            except ValueError:
                raise RedisDumpError(f"{config}: Redis {name!r} is not a number") from None
        return cls(config, directory, values.get("dbfilename", "dump.rdb"),
                   values.get("appenddirname", "appendonlydir"),
                   values.get("appendonly", "no").lower() == "yes", ports["port"],
                   ports["tls-port"])


_WANTED = ("dir", "dbfilename", "appenddirname", "appendonly", "port", "tls-port")


def _read_config(path: Path, values: dict[str, str], depth: int) -> dict[str, str]:
    """The settings we need, as Redis reads them: in order, includes in place, last wins.
    Other lines are never kept (requirepass is in the same file)."""
    if depth > 8:
        raise RedisDumpError(f"{path}: Redis config includes nest too deep")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError) as exc:  # ValueError: a NUL in an include's path
        why = exc.strerror if isinstance(exc, OSError) else "not a file name"
        raise RedisDumpError(f"cannot read the Redis config {path!r}: {why}") from None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, *more = line.split(None, 1)
        key, rest = key.lower(), more[0] if more else ""
        if key not in _WANTED and key != "include":
            continue
        try:
            args = shlex.split(rest)
        except ValueError:
            raise RedisDumpError(f"{path}: the Redis '{key}' line does not parse") from None
        if key == "include" and args:
            _read_config(Path(args[0]), values, depth + 1)
        elif len(args) == 1:
            values[key] = args[0]
    return values


def live_settings(files: RedisFiles) -> RedisSettings:
    """The one place the DR code gets its Redis credentials: the host's settings, pointed at
    THIS host's Redis (loopback, the deployed port), whatever host the agents use."""
    try:
        settings = redis_settings()
    except SettingsError as exc:
        raise RedisDumpError(f"the host's Redis settings do not load: {exc}") from None
    if files.tls_port and settings.tls:  # TLS on: the host's own certificate, over loopback
        return replace(settings, host="127.0.0.1", port=files.tls_port, ssl=True)
    return replace(settings, host="127.0.0.1", port=files.port, ssl=False, tls=None)


def _client(s: RedisSettings, **kw: Any) -> redis.Redis:
    return redis.Redis(**(s.client_kwargs() | kw), decode_responses=True, socket_timeout=30,
                       socket_connect_timeout=5)


def _wait(what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not check():
        if time.monotonic() > deadline:
            raise RedisDumpError(f"Redis: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _ready(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.BusyLoadingError, redis.ConnectionError):
        return False


def summarize(client: redis.Redis) -> dict[str, Any]:
    """Every stream's length and consumer groups (what the round trip compares)."""
    streams: dict[str, Any] = {}
    for key in sorted(client.scan_iter(count=1000, _type="stream")):
        groups = {
            g["name"]: {"consumers": g["consumers"], "pending": g["pending"],
                        "last-delivered-id": g["last-delivered-id"]}
            for g in client.xinfo_groups(key)}
        streams[key] = {"length": client.xlen(key), "groups": groups}
    return streams


def bgsave(client: redis.Redis) -> None:
    """A save that started after this call, finished: waits out one already running."""
    before = int(client.info("persistence")["rdb_saves"])
    while True:
        try:
            client.bgsave(schedule=True)
            break
        except redis.ResponseError as exc:
            if "in progress" not in str(exc):
                raise RedisDumpError(f"Redis refused BGSAVE: {exc}") from None
            _wait("the running save to finish",
                  lambda: not int(client.info("persistence")["rdb_bgsave_in_progress"]))

    def saved() -> bool:
        p = client.info("persistence")
        return int(p["rdb_saves"]) > before and not int(p["rdb_bgsave_in_progress"])

    _wait("BGSAVE to finish", saved)
    if client.info("persistence")["rdb_last_bgsave_status"] != "ok":
        raise RedisDumpError("Redis BGSAVE failed (see the Redis log): no dump in the bundle")


def _redis_server() -> str:
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        raise RedisDumpError("redis-server is not installed here: cannot load the dump")
    return found


@contextlib.contextmanager
def scratch_server(args: list[str], *, run_as: tuple[int, int] | None = None,
                   auth: RedisSettings | None = None) -> Iterator[redis.Redis]:
    """A redis-server with no TCP port, on a private unix socket, for loading a dump; stopped
    (SIGTERM; with `--save ""` in `args` it writes no RDB) on the way out. `run_as` (uid,
    gid): the owner of the files it writes."""
    work = Path(tempfile.mkdtemp(prefix="ark-dr-redis-"))
    try:
        if run_as is not None and os.geteuid() == 0:
            os.chown(work, *run_as)
        sock, log = work / "redis.sock", work / "redis.log"
        cmd = [_redis_server(), *args, "--port", "0", "--unixsocket", str(sock),
               "--unixsocketperm", "700", "--daemonize", "no", "--supervised", "no",
               "--pidfile", str(work / "redis.pid"), "--logfile", str(log)]
        user = run_as if run_as is not None and os.geteuid() == 0 else None
        # Nothing of this process's environment (it holds the Redis password) is passed on.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"},
                                user=user[0] if user else None, group=user[1] if user else None,
                                extra_groups=[] if user else None, umask=0o007)
        client = redis.Redis(unix_socket_path=str(sock), decode_responses=True,
                             socket_timeout=30,
                             password=auth.password if auth else None,
                             username=auth.username if auth else None)

        def up() -> bool:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
                raise RedisDumpError(f"the scratch redis-server exited ({proc.returncode}) "
                                     f"loading the dump: {tail.strip()}")
            return sock.exists() and _ready(client)

        try:
            _wait("the scratch redis-server to load the dump", up)
            yield client
            client.close()
            proc.terminate()  # SIGTERM: Redis's own shutdown (AOF fsynced; `--save ""`)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            client.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def dump_into(files: RedisFiles, dest: Path) -> dict[str, Any]:
    """BGSAVE the live Redis, copy its RDB to `dest`, load the copy and return its summary
    (the manifest's `redis` entry)."""
    try:
        live = _client(live_settings(files))
        try:
            bgsave(live)
            version = live.info("server")["redis_version"]
        finally:
            live.close()
    except redis.AuthenticationError:
        raise RedisDumpError("Redis refused the host's credentials (ARK_REDIS_PASSWORD)") \
            from None
    except redis.RedisError as exc:
        raise RedisDumpError(f"cannot dump Redis on port {files.port}: {exc}") from None
    shutil.copyfile(files.rdb, dest)
    dest.chmod(0o600)
    with scratch_server(["--dir", str(dest.parent), "--dbfilename", dest.name,
                         "--appendonly", "no", "--save", ""]) as scratch:
        streams = summarize(scratch)
        keys = scratch.dbsize()
    return {"dump": REDIS_MEMBER, "redis_version": version, "keys": keys, "streams": streams}


def differences(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Streams whose length or groups differ, as short sentences."""
    out = []
    for key in sorted(set(expected) | set(found)):
        e, f = expected.get(key), found.get(key)
        if e is None or f is None:
            out.append(f"stream {key} {'missing' if f is None else 'not in the bundle'}")
        elif e != f:
            out.append(f"stream {key}: bundle {e}, restored {f}")
    return out


@dataclass(frozen=True)
class ServiceControl:
    """How the restore stops and starts the deployed Redis (systemd on a host)."""

    stop: Callable[[], None]
    start: Callable[[], None]

    @classmethod
    def systemd(cls) -> ServiceControl:
        def run(action: str) -> None:
            res = subprocess.run(["systemctl", action, REDIS_SERVICE], capture_output=True,
                                 text=True, timeout=300, check=False,
                                 env=child_environment(drop=SECRET_VARIABLES))
            if res.returncode != 0:
                raise RedisDumpError(f"systemctl {action} {REDIS_SERVICE} failed: "
                                     f"{(res.stderr or res.stdout).strip()[-300:]}")
        return cls(lambda: run("stop"), lambda: run("start"))


def _place(staged: Path, files: RedisFiles) -> None:
    """The bundle's RDB as Redis's dump, owned like Redis's dir; the previous dump kept, the
    previous AOF set aside (it would win over the RDB)."""
    st = files.dir.stat()
    if files.rdb.exists():
        os.replace(files.rdb, files.rdb.with_name(files.rdb.name + PRE_RESTORE_SUFFIX))
    tmp = files.dir / f".{files.dbfilename}.dr-restore"
    shutil.copyfile(staged, tmp)
    os.chmod(tmp, 0o660)
    if os.geteuid() == 0:
        os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, files.rdb)
    if files.aof_dir.exists():
        aside = files.aof_dir.with_name(files.aof_dir.name + PRE_RESTORE_SUFFIX)
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(files.aof_dir, aside)


def _aof_rewritten(client: redis.Redis) -> bool:
    p = client.info("persistence")
    if p["aof_last_bgrewrite_status"] != "ok":
        raise RedisDumpError("Redis failed to write the AOF from the restored dump")
    return (int(p["aof_enabled"]) == 1 and not int(p["aof_rewrite_in_progress"])
            and not int(p["aof_rewrite_scheduled"]))


def restore_dump(staged: Path, entry: dict[str, Any], files: RedisFiles,
                 service: ServiceControl) -> str:
    """Redis holds the bundle's dump when this returns (one line saying so), its streams and
    groups checked against the manifest; RedisDumpError otherwise."""
    try:
        return _restore_dump(staged, entry, files, service)
    except redis.AuthenticationError:
        raise RedisDumpError("Redis refused the host's credentials (ARK_REDIS_PASSWORD)") \
            from None
    except redis.RedisError as exc:
        raise RedisDumpError(f"restoring Redis on port {files.port}: {exc}") from None


def _restore_dump(staged: Path, entry: dict[str, Any], files: RedisFiles,
                  service: ServiceControl) -> str:
    expected = entry.get("streams")
    if not isinstance(expected, dict):
        raise RedisDumpError("the manifest's redis entry has no stream summary")
    st = files.dir.stat()
    auth = live_settings(files)  # before anything is stopped: a bad setting stops nothing
    service.stop()
    try:
        return _load_and_start(staged, expected, files, service, (st.st_uid, st.st_gid), auth)
    except (RedisDumpError, redis.RedisError, OSError) as exc:
        raise RedisDumpError(
            f"{exc} (Redis may be stopped; its previous data is {files.rdb.name}"
            f"{PRE_RESTORE_SUFFIX} and {files.appenddirname}{PRE_RESTORE_SUFFIX} in "
            f"{files.dir})") from None


def _load_and_start(staged: Path, expected: dict[str, Any], files: RedisFiles,
                    service: ServiceControl, owner: tuple[int, int], auth: RedisSettings,
                    ) -> str:
    _place(staged, files)
    # Loaded with the AOF off (else Redis would ignore the RDB), then the AOF written from it.
    with scratch_server([str(files.config), "--appendonly", "no", "--save", ""],
                        run_as=owner, auth=auth) as scratch:
        problems = differences(expected, summarize(scratch))
        if problems:
            raise RedisDumpError("the restored dump does not hold what the bundle recorded: "
                                 + "; ".join(problems[:5]))
        if files.appendonly:
            scratch.config_set("appendonly", "yes")
            _wait("Redis to write the AOF from the restored dump",
                  lambda: _aof_rewritten(scratch))
    service.start()
    live = _client(auth)
    try:
        _wait("the restarted Redis to load", lambda: _ready(live))
        problems = differences(expected, summarize(live))
    finally:
        live.close()
    if problems:
        raise RedisDumpError("Redis restarted without the bundle's data: "
                             + "; ".join(problems[:5]))
    groups = sum(len(s["groups"]) for s in expected.values())
    return (f"Redis restored from the bundle's dump ({len(expected)} streams, {groups} "
            f"consumer groups, checked after restart"
            + ("; AOF rewritten from it)" if files.appendonly else ")"))
