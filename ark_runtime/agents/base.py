"""The process lifecycle every agent shares (INFRA_02, INFRA_04, AGENT_01-03).

start:  JSON logging -> flock (second instance: exit 75) -> Redis (retried with backoff)
        -> agent setup -> READY=1
run:    `step()` repeatedly; WATCHDOG=1 from the same loop, so a wedged loop stops the pings
        and systemd restarts the process
SIGTERM/SIGINT: set a flag only. The current step finishes everything it holds (each message
        is committed+acked or left pending for redelivery, never half done), then STOPPING=1,
        persist, flush logs, release the lock, exit 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from functools import cached_property
from types import FrameType
from typing import ClassVar

import redis

from ark_runtime import logjson, systemd
from ark_runtime.bus.errors import ErrorBus, held_by
from ark_runtime.bus.streams import BusSettings, connect, with_backoff
from ark_runtime.config import RedisSettings
from ark_runtime.exitcodes import ExitCode
from ark_runtime.lock import AlreadyRunning, ComponentLock, run_dir
from ark_runtime.settings import ArkSettings, SettingsError, declared, load

# How stale the cached pause check may be (see Agent.paused_cached).
PAUSE_CHECK_S = 0.25


class ConfigError(RuntimeError):
    """Bad configuration; the message names the setting and the fix."""


def retry_delay(failures: int) -> float:
    """Back-off before the next try after `failures` Redis errors in a row: 0.2 s doubling
    to a 5 s cap."""
    return min(5.0, 0.1 * 2 ** min(failures, 6))


class Agent:
    name: ClassVar[str]

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        # The declared variables' raw values are kept for the path helpers (host.layout,
        # lock.run_dir); every value the agent uses comes typed from `config`.
        self.env: dict[str, str] = declared() if env is None else dict(env)
        # The process's own name (lock, log file, consumer): the agent's, or a shard's (joey-1).
        self.instance: str = self.name
        self.log = logging.getLogger(f"ark.{self.name}")
        self.stop_event = threading.Event()
        self.r: redis.Redis | None = None
        self.errors: ErrorBus | None = None
        self.lock: ComponentLock | None = None
        self._paused_by: list[str] = []
        self._pause_checked_at = float("-inf")
        self._paused_now = False
        self._unreplicated = False  # the last commit did not reach ARK_BUS_WAIT_REPLICAS

    @cached_property
    def config(self) -> ArkSettings:
        """The typed settings (SettingsError names any bad variable)."""
        return load(self.env)

    # -- hooks -------------------------------------------------------------------------

    def setup(self) -> None:
        """Load domain objects; raise ConfigError on bad configuration."""

    def step(self) -> None:
        raise NotImplementedError

    def persist(self) -> None:
        """Save whatever state must survive a restart (called once, on the way out)."""

    def recover(self) -> None:
        """Called after a Redis error interrupted a step, before the next one."""

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only a flag: the loop decides when it is safe to stop (nothing half done).
        self.stop_event.set()

    def run(self) -> int:
        # The level comes typed from the settings; a bad one is reported (exit 78) once
        # logging works, so it must not stop logging from starting.
        try:
            level = self.config.log_level
        except SettingsError:
            level = "INFO"
        logjson.setup(self.instance, level=level, directory=logjson.log_dir(self.env))
        try:
            self.lock = ComponentLock(self.instance, run_dir(self.env)).acquire()
        except AlreadyRunning as exc:
            self.log.error(str(exc), extra={"event": "lock_refused"})
            return ExitCode.TEMPFAIL
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            return self._run_locked()
        finally:
            logjson.flush()
            self.lock.release()

    def _run_locked(self) -> int:
        try:
            self.settings = BusSettings.from_settings(self.config)
        except SettingsError as exc:
            self.log.error("bad configuration: %s", exc, extra={"event": "config_error"})
            return ExitCode.CONFIG
        interval = systemd.watchdog_interval()
        # Block on Redis for at most half a watchdog period, so pings are never late.
        if interval:
            block = min(self.settings.block_ms, int(interval * 500))
            self.settings = BusSettings(**{**self.settings.__dict__, "block_ms": max(block, 10)})
        self.r = connect(RedisSettings.from_settings(self.config), block_ms=self.settings.block_ms)
        self.errors = ErrorBus(self.r, self.name, self.settings.side_maxlen)
        try:
            with_backoff(self.r.ping, attempts=8, should_stop=lambda: self.stopping,
                         on_retry=lambda n, e: self.log.warning(
                             "redis not reachable (attempt %d): %s", n, e))
        except redis.AuthenticationError:
            # Not transient: exit 78 so systemd does not restart-loop on a wrong password.
            self._log_auth_failure()
            return ExitCode.CONFIG
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if self.stopping:  # asked to stop while waiting for Redis: nothing is in flight
                return ExitCode.OK
            self.log.error("cannot reach redis: %s; check ARK_REDIS_HOST/PORT/PASSWORD", exc,
                           extra={"event": "redis_unavailable"})
            return ExitCode.UNAVAILABLE
        try:
            if not self._setup_once_redis_has_room():
                return ExitCode.OK  # asked to stop while waiting: nothing is in flight
        except ConfigError as exc:
            self.log.error("bad configuration: %s", exc, extra={"event": "config_error"})
            # A consumer that cannot start halts its producers; Kyle has none, and pausing
            # the source itself would outlive the fix, so it reports an error only.
            self._report("critical" if self.name != "kyle" else "error", "ConfigError", str(exc))
            return ExitCode.CONFIG
        systemd.notify("READY=1")
        systemd.notify(f"STATUS={self.instance} running")
        self.log.info("ready", extra={"event": "ready", "pid": os.getpid()})
        exit_code = self._loop(interval)
        systemd.notify("STOPPING=1")
        self.log.info("stopping: finishing in-flight work", extra={"event": "stopping"})
        self.persist()
        self.log.info("stopped cleanly", extra={"event": "stopped"})
        return exit_code

    def _setup_once_redis_has_room(self) -> bool:
        """setup(), retried while Redis is full (creating a consumer group is a write it
        refuses at maxmemory): the unit waits, its start timeout extended, instead of
        crash-looping until systemd gives up on it. False when asked to stop meanwhile."""
        failures = 0
        while True:
            try:
                self.setup()
                return True
            except redis.OutOfMemoryError as exc:
                failures += 1
                delay = retry_delay(failures)
                self.log.warning("redis is full (maxmemory), starting again in %.1fs: %s",
                                 delay, exc, extra={"event": "redis_full"})
                systemd.notify(f"STATUS={self.instance} waiting: redis is full")
                systemd.notify(f"EXTEND_TIMEOUT_USEC={int((delay + 30) * 1_000_000)}")
                if self.stop_event.wait(delay):
                    return False

    def _loop(self, interval: float | None) -> int:
        next_ping = 0.0
        failures = 0
        while not self.stopping:
            now = time.monotonic()
            if interval and now >= next_ping:
                systemd.notify("WATCHDOG=1")
                next_ping = now + interval
            try:
                self.step()
                failures = 0
            except redis.AuthenticationError:
                # The password changed under us: waiting will not fix it. Stop cleanly (the
                # step left nothing half done) with 78, so systemd does not restart-loop.
                self._log_auth_failure()
                return ExitCode.CONFIG
            except (redis.ConnectionError, redis.TimeoutError, redis.OutOfMemoryError) as exc:
                # Redis went away mid-run, or is full (maxmemory with noeviction refuses
                # writes; a commit script fails at its first write, so nothing is half
                # done): back off and retry; messages wait in the streams. Exiting instead
                # would crash-loop until systemd gives up on the unit for good.
                failures += 1
                delay = retry_delay(failures)
                full = isinstance(exc, redis.OutOfMemoryError)
                self.log.warning("redis %s, retrying in %.1fs: %s",
                                 "is full (maxmemory)" if full else "error", delay, exc,
                                 extra={"event": "redis_full" if full else "redis_retry"})
                self.stop_event.wait(delay)
                self.recover()
        return ExitCode.OK

    # -- shared helpers ----------------------------------------------------------------

    def _log_auth_failure(self) -> None:
        # Names the setting, never its value.
        self.log.error("redis refused our credentials: ARK_REDIS_PASSWORD is wrong or "
                       "missing for this server; fix the env file and restart",
                       extra={"event": "redis_auth_failed"})

    def paused(self) -> bool:
        """True while a critical error downstream holds this agent. Logged on change."""
        assert self.r is not None
        holders = held_by(self.r, self.name)
        if holders != self._paused_by:
            if holders:
                self.log.warning("paused by critical error at %s", ", ".join(holders),
                                 extra={"event": "paused", "origins": holders})
                systemd.notify(f"STATUS={self.name} paused by {', '.join(holders)}")
            else:
                self.log.warning("pause cleared, resuming", extra={"event": "resumed"})
                systemd.notify(f"STATUS={self.name} running")
            self._paused_by = holders
        return bool(holders)

    def paused_cached(self) -> bool:
        """`paused()`, asked of Redis at most every PAUSE_CHECK_S rather than on every wake-up
        (one round trip per batch saved): a pause takes effect within that time, which is what
        a halt on a critical error needs (a batch or two more is harmless, it is not lost)."""
        now = time.monotonic()
        if now - self._pause_checked_at >= PAUSE_CHECK_S:
            self._paused_now = self.paused()
            self._pause_checked_at = now
        return self._paused_now

    def _replication(self, acked: int | None) -> None:
        """Issue #20: say when commits stop reaching the replicas WAIT asks for, and when
        they reach them again (once each, not per commit)."""
        if acked is None:
            return
        wanted = self.settings.wait_replicas
        short = acked < wanted
        if short and not self._unreplicated:
            self.log.warning(
                "commits reach %d of %d replica(s) within %d ms: a failover now could take "
                "back the newest of them", acked, wanted, self.settings.wait_timeout_ms,
                extra={"event": "commit_not_replicated", "acked": acked, "wanted": wanted})
        elif not short and self._unreplicated:
            self.log.info("commits reach their replicas again",
                          extra={"event": "commit_replicated", "acked": acked})
        self._unreplicated = short

    def _report(self, severity: str, error: str, message: str, related=None) -> None:
        if self.errors is None:
            return
        try:
            self.errors.publish(severity, error, message, related=related)
        except redis.RedisError as exc:  # never let reporting hide the original failure
            self.log.error("could not publish error: %s", exc)
