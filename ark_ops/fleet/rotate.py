"""`invoke secrets.rotate KIND` (issue 22 §3): rotate one secret without stopping the pipeline,
audited (who, kind, when, per-host result; never a value).

    session-secret  ARK_API_SECRET: a new value in .secrets/api_secret, set in place in each
                    API host's api.env (ark env set), ark-api restarted alone (the agents keep
                    their PIDs: checked). Every console session ends (they live in the API's
                    memory). Refused when the inventory sets ark_runtime_api_secret (Vault).
    operators       the console accounts: the inventory's ark_runtime_api_operators installed
                    only when every operator has a new password hash (ark api
                    replace-operators), then ark-api restarted alone: every session ends.
    snapshot-key    each host's snapshot HMAC key (ark snapshot rotate-key): snapshots that
                    verified still verify; tampered ones stay refused.
    dr-signing-key  the control node's DR signing key (dr_sign.rotate_signing_key): the old
                    public half stays pinned, so older bundles still verify.
    redis           every Redis user's password (each component's and the root tools'
                    admin): two passwords per user overlap while each unit restarts alone
                    with its new one (ark_ops/fleet/rotate_redis.py). Refused when the
                    inventory sets ark_redis_password / ark_redis_user_passwords (Vault).

Values travel as files (SFTP into the SSH user's 0700 temp dir), never on a command line.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ark_ops.errors import OpsError, RefusedError
from ark_ops.fleet.audit import AuditIdentity, audit_action
from ark_ops.fleet.ssh import (
    FleetHost,
    HostOutcome,
    inventory_hosts,
    remote_script,
    run_as_root,
    run_everywhere,
    user_tempdir,
)
from ark_ops.inventories import held, resolve_inventory

KINDS = ("session-secret", "operators", "snapshot-key", "dr-signing-key", "redis")
API_GROUP = "ark_api"
SECRET_VAR, OPERATORS_VAR = "ark_runtime_api_secret", "ark_runtime_api_operators"
API_SECRET_FILE = "api_secret"
# As the role's password lookup makes it (roles/ark_runtime/defaults/main.yml).
_SECRET_CHARS, _SECRET_LENGTH = string.ascii_letters + string.digits, 48
_VAULT_REF = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)")


class RotateRefused(RefusedError):
    """The rotation cannot start as asked; nothing was changed."""


def parse_kind(text: object) -> str:
    """KIND, or RotateRefused naming the argument and what it takes."""
    kind = text.strip().lower() if isinstance(text, str) else ""
    if kind not in KINDS:
        shown = repr(text)[:40] if isinstance(text, str) else type(text).__name__
        raise RotateRefused(f"KIND must be one of {', '.join(KINDS)}; got {shown}")
    return kind


# --- what the inventory says -----------------------------------------------------------------


def inventory_values(inventory: Path, group: str, name: str, *, template: bool,
                     ) -> dict[str, Any]:
    """host -> the variable as the inventory (group_vars/host_vars, not role defaults) sets it,
    templated (Vault opened) when `template`; hosts that do not set it are absent."""
    from ansible.errors import AnsibleError

    from ark_ops.fleet import vault

    try:
        return _inventory_values(inventory, group, name, template=template)
    except AnsibleError as exc:  # no or a wrong vault password: say which option gives it
        raise (vault.explain(exc, f"inventory {inventory}")
               or OpsError(f"inventory {inventory}: {vault.first_line(exc)}")) from None


def _inventory_values(inventory: Path, group: str, name: str, *, template: bool,
                      ) -> dict[str, Any]:
    from ansible.inventory.manager import InventoryManager
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    from ark_ops.fleet import vault

    loader = vault.loader()
    inv = InventoryManager(loader=loader, sources=[str(inventory)])
    variables = VariableManager(loader=loader, inventory=inv)
    out = {}
    for h in inv.get_hosts(group):
        v = variables.get_vars(host=h)
        if name in v:
            out[h.name] = Templar(loader=loader, variables=v).template(v[name]) if template \
                else v[name]
    return out


def refuse_if_inventory_sets_redis(inventory: Path) -> None:
    """The Redis passwords live in the operator's vars: a value made here would be undone."""
    from ark_ops.fleet.rotate_redis import INVENTORY_VARS

    named = [v for v in INVENTORY_VARS if inventory_values(inventory, "ark", v, template=False)]
    if named:
        raise RotateRefused(
            f"{' and '.join(named)} {'are' if len(named) > 1 else 'is'} set in the inventory, "
            "so the Redis passwords are yours to change: put new values there (ansible-vault "
            "edit), then `invoke deploy` (LAUNCH.md, Rotating secrets)")


def refuse_if_inventory_sets_secret(inventory: Path) -> None:
    """The secret lives in the operator's vars (Vault, as LAUNCH.md advises): .secrets/ is not
    what the deploy renders, so a value made here would be undone by the next deploy."""
    raw = inventory_values(inventory, API_GROUP, SECRET_VAR, template=False)
    if not raw:
        return
    refs = sorted({m.group(1) for v in raw.values() if isinstance(v, str)
                   for m in _VAULT_REF.finditer(v)})
    where = f" (from {', '.join(refs)})" if refs else ""
    raise RotateRefused(
        f"{SECRET_VAR} is set in the inventory{where}, so the session secret is yours to "
        f"change: put a new value of at least 32 characters in {refs[0] if refs else SECRET_VAR}"
        " (ansible-vault edit), then `invoke deploy` (LAUNCH.md, Rotating secrets)")


# --- remote steps -----------------------------------------------------------------------------


_AGENT_PIDS = ("for u in $(systemctl list-units --plain --no-legend --state=running "
               "'ark-agent@*.service' | awk '{print $1}'); do "
               "echo \"$u $(systemctl show -p MainPID --value \"$u\")\"; done")


def _agent_pids(conn, host: FleetHost) -> dict[str, str]:
    res = run_as_root(conn, host, _AGENT_PIDS, timeout=60)
    return dict(line.split(None, 1) for line in res.stdout.splitlines() if " " in line)


def _install_then_restart_api(payload: bytes, kind: str, identity: AuditIdentity) -> Callable:
    """Upload `payload` (a value or a file: never on a command line), install it as root and
    restart ark-api alone (remote/rotate.sh); the agents must keep their PIDs."""

    def step(conn, host: FleetHost) -> str:
        before = _agent_pids(conn, host)
        with user_tempdir(conn) as upload:
            remote = f"{upload}/{kind}"
            conn.put(io.BytesIO(payload), remote)
            res = run_as_root(conn, host, remote_script(
                "rotate.sh", kind, remote, identity.who, identity.correlation_id), timeout=180)
        if res.exited != 0:
            raise OpsError((res.stderr or res.stdout).strip()[-400:] or f"exit {res.exited}")
        after = _agent_pids(conn, host)
        moved = sorted(u for u, pid in before.items() if after.get(u) != pid)
        if moved:
            raise OpsError(f"ark-api restarted, but {', '.join(moved)} restarted too")
        return f"ark-api restarted alone; {len(before)} agent(s) kept running"

    return step


# --- the kinds --------------------------------------------------------------------------------


def _secrets_dir(inventory: Path) -> Path:
    d = (inventory if inventory.is_dir() else inventory.parent) / ".secrets"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def _write_secret(path: Path, value: str) -> None:
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rotate_session_secret(inv: Path, limit: str | None, identity: AuditIdentity,
                          log) -> list[HostOutcome]:
    hosts = inventory_hosts(inv, limit, group=API_GROUP)
    value = "".join(secrets.choice(_SECRET_CHARS) for _ in range(_SECRET_LENGTH))
    # .secrets/ first: it is what every later deploy renders, so a host missed below gets
    # the new value from the next deploy instead of the old one coming back.
    _write_secret(_secrets_dir(inv) / API_SECRET_FILE, value)
    log(f"  new session secret in {_secrets_dir(inv) / API_SECRET_FILE}")
    return run_everywhere(hosts, _install_then_restart_api(value.encode() + b"\n",
                                                           "session-secret", identity))


def rotate_operators(inv: Path, limit: str | None, identity: AuditIdentity,
                     log) -> list[HostOutcome]:
    from ansible.plugins.filter.core import to_nice_json

    hosts = inventory_hosts(inv, limit, group=API_GROUP)
    accounts = inventory_values(inv, API_GROUP, OPERATORS_VAR, template=True)
    missing = sorted(h.name for h in hosts if not accounts.get(h.name))
    if missing:
        raise RotateRefused(f"{OPERATORS_VAR} is not set for {', '.join(missing)}: set each "
                            "operator's new password_hash (ark api hash-password) in the "
                            "inventory first")

    def step(conn, host: FleetHost) -> str:
        # As the role renders it (to_nice_json + newline): the next deploy changes nothing.
        text = to_nice_json(json.loads(json.dumps(accounts[host.name]))) + "\n"
        return _install_then_restart_api(text.encode(), "operators", identity)(conn, host)

    return run_everywhere(hosts, step)


def rotate_snapshot_key(inv: Path, limit: str | None, identity: AuditIdentity,
                        log) -> list[HostOutcome]:
    def step(conn, host: FleetHost) -> str:
        res = run_as_root(conn, host, remote_script(
            "rotate.sh", "snapshot-key", "", identity.who, identity.correlation_id), timeout=600)
        if res.exited != 0:
            raise OpsError((res.stderr or res.stdout).strip()[-400:] or f"exit {res.exited}")
        return res.stdout.strip().splitlines()[-1]

    return run_everywhere(inventory_hosts(inv, limit), step)


def rotate_redis_users(inv: Path, limit: str | None, identity: AuditIdentity,
                       log) -> list[HostOutcome]:
    from ark_ops.fleet.rotate_redis import rotate_redis

    return rotate_redis(inv, _secrets_dir(inv), identity, log, _write_secret)


SESSIONS_END = "every console session ended: operators sign in again"


def rotate(kind: str, inventory: str | None = None, limit: str | None = None,
           log=print) -> list[HostOutcome]:
    """Rotate one KIND; audited on the control node (and each host for the host kinds)."""
    kind = parse_kind(kind)
    refuse_limit(kind, limit)
    inv = resolve_inventory(inventory, log, bring_up=False)
    inv_dir = inv if inv.is_dir() else inv.parent
    # Never beside a deploy of the same inventory: it renders these very secrets.
    with held(inv_dir, "secrets.rotate"):
        return _rotate(kind, inv, inv_dir, inventory, limit, log)


def _rotate(kind: str, inv: Path, inv_dir: Path, inventory: str | None, limit: str | None,
            log) -> list[HostOutcome]:
    if kind == "session-secret":
        refuse_if_inventory_sets_secret(inv)
    if kind == "dr-signing-key":
        return [_rotate_dr_key(inv_dir, inventory, log)]
    if kind == "redis":
        refuse_if_inventory_sets_redis(inv)
    runners = {"session-secret": rotate_session_secret, "operators": rotate_operators,
               "snapshot-key": rotate_snapshot_key, "redis": rotate_redis_users}
    host_limit = {"snapshot-key": limit, "redis": None}.get(kind, _api_limit(limit))
    with audit_action("secrets.rotate", {"kind": kind}, inventory, host_limit) as rec:
        outcomes = runners[kind](inv, limit, rec.identity, log)
        rec.outcomes(outcomes)
    for o in outcomes:
        log(f"  {o.host:<16} " + (o.value if o.ok else f"FAILED: {o.error}"))
    # The API restarts in each (redis: with its new password), and sessions live in its memory.
    if kind in ("session-secret", "operators", "redis") and any(o.ok for o in outcomes):
        log(f"  {SESSIONS_END}")
    if kind == "session-secret" and not all(o.ok for o in outcomes):
        log("  hosts that FAILED keep the old secret until `invoke deploy --limit HOST` renders "
            "the new one from .secrets/ (that deploy restarts their API and agents)")
    return outcomes


def refuse_limit(kind: str, limit: str | None) -> None:
    """--limit only where a part of the fleet can sensibly be rotated on its own."""
    if not limit:
        return
    if kind == "dr-signing-key":
        raise RotateRefused("--limit does not apply to dr-signing-key: it is the control "
                            "node's key, one per inventory")
    if kind == "redis":
        raise RotateRefused("--limit does not apply to redis: each Redis user has one password "
                            "for the whole inventory (.secrets/redis_password_<user>)")
    if kind == "session-secret":
        raise RotateRefused("--limit does not apply to session-secret: it is one value for "
                            "every ark_api host (.secrets/api_secret); a host that failed "
                            "gets it from `invoke deploy --limit HOST`")


def _api_limit(limit: str | None) -> str:
    return f"{API_GROUP}:&{limit}" if limit else API_GROUP


def _rotate_dr_key(inv_dir: Path, inventory: str | None, log) -> HostOutcome:
    import time

    from ark_ops.fleet.dr_sign import rotate_signing_key

    t0 = time.monotonic()
    with audit_action("secrets.rotate", {"kind": "dr-signing-key"}, inventory) as rec:
        old_fp, new_fp = rotate_signing_key(inv_dir)
        rec.args.update(old_fingerprint=old_fp, new_fingerprint=new_fp)  # public, not secret
    log(f"  DR signing key rotated: {old_fp} -> {new_fp}\n"
        f"  the old key stays pinned as a previous key (bundles it signed still verify);\n"
        f"  record the new fingerprint apart (key escrow) and commit "
        f"{inv_dir / '.pins' / 'dr_signing_key.yml'}")
    return HostOutcome("control", True, time.monotonic() - t0, new_fp)
