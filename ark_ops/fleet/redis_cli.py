"""`invoke redis.cli -- ARGS`: redis-cli on a Redis host as the operators' admin user
(issue #19 §3, SEC_01).

The admin password never leaves the host and never reaches a command line: root's shell on
the Redis host reads it from the root-only infrastructure.env (the root tools' user, admin)
and hands it to redis-cli through its environment (REDISCLI_AUTH). The control node only
sends the command's words, each shell-quoted. Login and escalation are the inventory's (an
unprivileged SSH user with sudo, a vaulted become password on the SSH channel's stdin), as
for every fleet command (ark_ops/fleet/logs.py's ssh_argv).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from typing import TextIO

from ark_ops.errors import OpsError
from ark_ops.fleet.logs import ssh_argv, ssh_input
from ark_ops.fleet.ssh import FleetHost

ENV_FILE = "/etc/ark/env/infrastructure.env"  # the root tools' Redis user (admin)


class RedisCliError(OpsError):
    exit_code = 64  # EX_USAGE


def as_root_tools(env_file: str = ENV_FILE, password: str = "$ARK_REDIS_PASSWORD",
                  cli: str = "redis-cli") -> str:
    """The start of a host-side `redis-cli` line that logs in as the host's root tools (`ark`)
    do: the env file's user, admin - or, on a host deployed while its Redis had no users yet
    (a rolling upgrade), none: the password alone. `password` is a shell expression that root's
    shell expands into redis-cli's environment (REDISCLI_AUTH): the line never holds a value.
    The `default` user is off on a deployed host, so a login without the user is refused.
    With TLS on (ARK_REDIS_TLS_DIR in the env file) it logs in over TLS with the host's
    certificate; the port to give is then the env file's ARK_REDIS_PORT (the TLS port).
    `cli` may put a wrapper before redis-cli (`timeout 10 redis-cli`: redis-cli 7.0 has no
    connect timeout of its own)."""
    return (f"set -a; . {shlex.quote(env_file)}; set +a; "
            f'REDISCLI_AUTH="{password}" {cli} --no-auth-warning '
            '${ARK_REDIS_USERNAME:+--user "$ARK_REDIS_USERNAME"} ' + TLS_FLAGS)


# Issue #19 §4: with TLS on, the env file names the host's TLS directory (root's files).
TLS_FLAGS = ('${ARK_REDIS_TLS_DIR:+--tls --cacert "$ARK_REDIS_TLS_DIR/ca.crt" '
             '--cert "$ARK_REDIS_TLS_DIR/host.crt" --key "$ARK_REDIS_TLS_DIR/host.key"} ')


def remote_command(args: list[str], env_file: str = ENV_FILE) -> str:
    """The host-side shell line: the env file's names, never its values, plus the words. It
    asks the Redis host's own server, over loopback: on a replica's host (issue #20) the env
    file names the set's primary, and `redis.status` must hear each member for itself."""
    if not args:
        raise RedisCliError("give redis-cli's arguments after --, e.g. "
                            "invoke redis.cli -- INFO memory")
    return (as_root_tools(env_file) + '-h 127.0.0.1 -p "${ARK_REDIS_PORT:-6379}" '
            + " ".join(shlex.quote(a) for a in args))


def pick(hosts: list[FleetHost], host: str | None) -> FleetHost:
    if host is not None:
        named = [h for h in hosts if h.name == host]
        if not named:
            raise RedisCliError(f"--host {host[:80]!r} is not an ark_redis host of this "
                                f"inventory ({', '.join(h.name for h in hosts)})")
        return named[0]
    return hosts[0]


def run(inventory: str | None, host: str | None, args: list[str],
        out: TextIO = sys.stdout, err: TextIO = sys.stderr,
        runner=subprocess.run) -> int:
    from ark_ops.fleet.ssh import inventory_hosts
    from ark_ops.inventories import resolve_inventory

    command = remote_command(args)
    target = pick(inventory_hosts(resolve_inventory(inventory, bring_up=False),
                                  group="ark_redis"), host)
    try:
        res = runner(ssh_argv(target, command), capture_output=True, text=True,
                     input=ssh_input(target), timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OpsError(f"{target.name}: {exc}") from None
    out.write(target.become.scrub(res.stdout))
    err.write(target.become.scrub(res.stderr))
    return res.returncode
