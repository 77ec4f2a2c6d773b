"""`invoke secrets.rotate redis` (issue 22 §3): every Redis user's password (each component's
and the root tools' admin) rotated with the pipeline running.

Redis 7 lets a user hold two passwords, so the roll is:

  1. check    each Redis host: its ACL file holds every user's password from .secrets/ (as
              hashes) and nothing is mid-upgrade; each ARK host says which users it has files
              for. Nothing has changed yet; a refusal here names what to do.
  2. .secrets the new passwords replace the old in the inventory's .secrets/: from here on a
              deploy renders the new ones everywhere, so a roll stopped half-way is finished by
              `invoke deploy` (which restarts what it changes).
  3. overlap  each Redis host: every user takes its new password beside the old one, in the
              running Redis and in the ACL file (a restart of Redis keeps both).
  4. units    each ARK host: each unit's Redis user file (and infrastructure.env's admin) set
              in place, and only the unit that loads it restarted; the others keep running.
  5. finish   each Redis host: the old passwords are removed; the ACL file is what a deploy
              renders from .secrets/, so the next deploy changes nothing.

Only hashes travel to a Redis host, and an ARK host gets only the passwords of its own units.
Values travel as files (SFTP into the SSH user's 0700 temp dir), never on a command line or
in any output. Refused when the inventory sets the passwords itself (Vault): they are the
operator's to change there.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import shlex
import string
from collections.abc import Callable
from pathlib import Path

from ark_ops.errors import OpsError, RefusedError
from ark_ops.fleet.audit import AuditIdentity
from ark_ops.fleet.ssh import (
    FleetHost,
    HostOutcome,
    inventory_hosts,
    remote_script,
    run_as_root,
    run_everywhere,
    user_tempdir,
)
from ark_runtime.bus.acl import LINK_USERS

REDIS_GROUP = "ark_redis"
ADMIN = "admin"
# As playbooks/group_vars/all/ark.yml's password lookups make them.
ADMIN_FILE, USER_FILE_PREFIX = "redis_password", "redis_password_"
_CHARS, _LENGTH = string.ascii_letters + string.digits, 40
# The inventory variables that, when set, make the passwords the operator's (Vault).
INVENTORY_VARS = ("ark_redis_password", "ark_redis_user_passwords")
# roles/ark_redis/defaults/main.yml, when the inventory does not say otherwise.
DEFAULT_PORT, DEFAULT_ACLFILE = 6379, "/etc/redis/ark-users.acl"
_USERS_HERE = ("cd /etc/ark/env 2>/dev/null && { [ -f infrastructure.env ] && echo admin; "
               "for f in redis/*.env; do [ -f \"$f\" ] && basename \"$f\" .env; done; }; true")


def sha256(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def new_password() -> str:
    return "".join(secrets.choice(_CHARS) for _ in range(_LENGTH))


def current_passwords(secrets_dir: Path) -> dict[str, str]:
    """user -> its password in .secrets/ (admin from redis_password). Not the Redis sets' link
    users (issue #20: replication, sentinel): their passwords also live in ark.conf's
    masterauth and the Sentinels' auth-pass, which this roll does not change."""
    out = {}
    for path in sorted(secrets_dir.glob(USER_FILE_PREFIX + "*")):
        if path.name.startswith(".") or path.name.endswith(".tmp") \
                or path.name.removeprefix(USER_FILE_PREFIX) in LINK_USERS:
            continue
        out[path.name.removeprefix(USER_FILE_PREFIX)] = _read(path)
    admin = secrets_dir / ADMIN_FILE
    if not admin.is_file() or not out:
        raise RefusedError(f"{secrets_dir} has no Redis passwords (redis_password, "
                            "redis_password_<user>): deploy first, which makes them")
    out[ADMIN] = _read(admin)
    return out


def _read(path: Path) -> str:
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise RefusedError(f"{path} is empty: run `invoke deploy` to make it again")
    return value


def hash_map(old: dict[str, str], new: dict[str, str]) -> bytes:
    """The Redis hosts' MAP: "USER OLD_SHA256 NEW_SHA256" per line, never a password."""
    return "".join(f"{u} {sha256(old[u])} {sha256(new[u])}\n" for u in sorted(old)).encode()


def redis_target(host: FleetHost) -> tuple[str, str]:
    """(ACL file, port) of a Redis host, as its inventory vars or the role defaults say."""
    port = host.vars.get("ark_redis_port", DEFAULT_PORT)
    try:
        port = int(str(port))
    except ValueError:
        raise RefusedError(f"{host.name}: ark_redis_port {str(port)[:40]!r} is not a port "
                            "number") from None
    if not 1 <= port <= 65535:
        raise RefusedError(f"{host.name}: ark_redis_port {port} is not between 1 and 65535")
    aclfile = str(host.vars.get("ark_redis_aclfile_path", DEFAULT_ACLFILE))
    if not aclfile.startswith("/") or "{" in aclfile:
        raise RefusedError(f"{host.name}: ark_redis_aclfile_path {aclfile[:80]!r} is not an "
                            "absolute path")
    return aclfile, str(port)


def _redis_phase(phase: str, hashes: bytes, admin_password: str) -> Callable:
    def step(conn, host: FleetHost) -> str:
        aclfile, port = redis_target(host)
        with user_tempdir(conn) as upload:
            conn.put(io.BytesIO(hashes), f"{upload}/map")
            conn.put(io.BytesIO(admin_password.encode() + b"\n"), f"{upload}/auth")
            res = run_as_root(conn, host, remote_script(
                "redis_rotate.sh", phase, f"{upload}/map", f"{upload}/auth", aclfile, port),
                timeout=120)
        if res.exited != 0:
            raise OpsError((res.stderr or res.stdout).strip()[-400:] or f"exit {res.exited}")
        return res.stdout.strip().splitlines()[-1]

    return step


def _users_here(conn, host: FleetHost) -> list[str]:
    res = run_as_root(conn, host, _USERS_HERE, timeout=60)
    if res.exited != 0:
        raise OpsError((res.stderr or res.stdout).strip()[-300:] or f"exit {res.exited}")
    return res.stdout.split()


def _units_step(new: dict[str, str], users: dict[str, list[str]],
                identity: AuditIdentity) -> Callable:
    def step(conn, host: FleetHost) -> str:
        mine = [u for u in users.get(host.name, []) if u in new]
        if not mine:
            return "no ARK unit here logs in to Redis"
        with user_tempdir(conn) as upload:
            conn.run(f"mkdir -m 0700 {shlex.quote(upload)}/users", timeout=60)
            for u in mine:
                conn.put(io.BytesIO(new[u].encode() + b"\n"), f"{upload}/users/{u}")
            res = run_as_root(conn, host, remote_script(
                "redis_users_rotate.sh", f"{upload}/users", identity.who,
                identity.correlation_id), timeout=600)
        if res.exited != 0:
            raise OpsError((res.stderr or res.stdout).strip()[-400:] or f"exit {res.exited}")
        return res.stdout.strip().splitlines()[-1]

    return step


def _failed(outcomes: list[HostOutcome]) -> list[HostOutcome]:
    return [o for o in outcomes if not o.ok]


def _say(outcomes: list[HostOutcome]) -> str:
    return "; ".join(f"{o.host}: {o.error}" for o in outcomes)


def rotate_redis(inv: Path, secrets_dir: Path, identity: AuditIdentity, log,
                 write_secret: Callable[[Path, str], None]) -> list[HostOutcome]:
    """The five steps above. Returns one outcome per host (the last step it took)."""
    redis_hosts = inventory_hosts(inv, group=REDIS_GROUP)
    ark_hosts = inventory_hosts(inv)
    for h in redis_hosts:
        redis_target(h)  # a bad port or path stops here, before anything
    old = current_passwords(secrets_dir)
    new = {u: new_password() for u in old}
    hashes = hash_map(old, new)

    log("  check: every Redis host holds the passwords of .secrets/")
    checked = run_everywhere(redis_hosts, _redis_phase("check", hashes, old[ADMIN]))
    if _failed(checked):
        raise RefusedError("nothing was changed: " + _say(_failed(checked)))
    users: dict[str, list[str]] = {}
    listed = run_everywhere(ark_hosts, lambda conn, h: users.setdefault(
        h.name, _users_here(conn, h)))
    if _failed(listed):
        raise RefusedError("nothing was changed: " + _say(_failed(listed)))

    for u, value in new.items():
        write_secret(secrets_dir / (ADMIN_FILE if u == ADMIN else USER_FILE_PREFIX + u), value)
    log(f"  .secrets/: new passwords for {len(new)} Redis users")
    finish_hint = ("the new passwords are in .secrets/: `invoke deploy` finishes the rotation "
                   "(it restarts what it changes)")

    log("  overlap: old and new passwords both log in")
    overlapped = run_everywhere(redis_hosts, _redis_phase("overlap", hashes, old[ADMIN]))
    if _failed(overlapped):
        raise OpsError(f"overlap failed: {_say(_failed(overlapped))}; {finish_hint}")

    log("  units: each restarted alone with its new password")
    moved = run_everywhere(ark_hosts, _units_step(new, users, identity))
    if _failed(moved):
        raise OpsError(f"units failed: {_say(_failed(moved))}; the old passwords still log "
                       f"in; {finish_hint}")

    log("  finish: only the new passwords log in")
    finished = run_everywhere(redis_hosts, _redis_phase("finish", hashes, new[ADMIN]))
    if _failed(finished):
        raise OpsError(f"finish failed: {_say(_failed(finished))}; the old passwords still "
                       f"log in there; {finish_hint}")
    by_host = {o.host: o for o in moved}
    for o in finished:
        value = f"{o.value}" + (f"; {by_host[o.host].value}" if o.host in by_host else "")
        by_host[o.host] = HostOutcome(o.host, True, o.seconds, value)
    return list(by_host.values())
