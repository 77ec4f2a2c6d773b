"""SEC_03/GOV_01 (control side): who did what, where, with what result — on the control node
and on every target host, tied together by one correlation id.

    with audit_action("panic", {"limit": limit}, inventory, limit) as rec:
        outcomes = run_panic(..., rec.identity)   # who + correlation id, passed explicitly
        rec.outcomes(outcomes)          # per-host ok/failed

The fleet actions themselves open the record (fleet.panic, fleet.dr, deploy.run,
fleet.config_history, verify.run), so every caller - a task, a benchmark, a test -
leaves one. The identity (`AuditIdentity`) reaches children as an argument or an explicit
environment (ansible-playbook's, a remote script's), never through this process's os.environ.

The control node's record is a hash chain of its own (ark_runtime's AuditLog) under
`inventory/<name>/.state/audit/` (git-ignored): `started` first, then ok / partial / failed
with the per-host results, even when the action raises or is interrupted (Ctrl+C). Each
target host gets one record of its result through `ark audit record` (as root: through sudo
for a non-root SSH user, as ark_ops.fleet.hostaccess derives it from the inventory) with the same
correlation id, and its new head (seq, hash) is kept in `heads.json`, so `invoke audit.verify`
notices a host chain whose tail was cut or that was rewritten since.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ark_ops.errors import OpsError
from ark_ops.fleet.ssh import FleetHost, HostOutcome, inventory_hosts, run_as_root, run_everywhere
from ark_ops.lab.config import LabPaths
from ark_runtime.host.atomic import atomic_write_text
from ark_runtime.host.audit.log import AuditLog, redact

ARK = "/opt/ark/venv/bin/ark"
REMOTE_TIMEOUT = 60


def actor() -> str:
    """Who runs this: $ARK_ACTOR, else login user @ control host (panic, DR and config
    history name their operator the same way)."""
    return os.environ.get("ARK_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


@dataclass(frozen=True)
class AuditIdentity:
    """Who acts, and the control node's id of the action: what each host records with it."""

    who: str
    correlation_id: str

    @classmethod
    def new(cls, who: str | None = None) -> AuditIdentity:
        return cls(who or actor(), uuid.uuid4().hex)

    def env(self) -> dict[str, str]:
        """For a child's environment (ansible-playbook reads it in config_version.yml; `ark`
        on a host reads ARK_ACTOR / ARK_CORRELATION_ID)."""
        return {"ARK_ACTOR": self.who, "ARK_CORRELATION_ID": self.correlation_id}


def inventory_dir(inventory: str | None) -> Path:
    """The inventory's directory without bringing the lab up (the lab's when none given)."""
    if not inventory:
        return LabPaths.default().inventory.resolve()
    path = Path(inventory).resolve()
    return path if path.is_dir() else path.parent


def inventory_file(inventory: str | None) -> Path:
    if inventory:
        return Path(inventory).resolve()
    return LabPaths.default().inventory.resolve() / "hosts.yml"


def state_dir(inventory: str | None) -> Path:
    d = inventory_dir(inventory) / ".state" / "audit"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


# --- heads kept on the control node ----------------------------------------------------------


def load_heads(inventory: str | None) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads((state_dir(inventory) / "heads.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def keep_heads(inventory: str | None, heads: dict[str, dict[str, Any]]) -> None:
    if not heads:
        return
    merged = {**load_heads(inventory), **heads}
    atomic_write_text(state_dir(inventory) / "heads.json",
                      json.dumps(merged, indent=2, sort_keys=True) + "\n", mode=0o600)


def host_key_id(conn) -> str:
    """The host's identity: its SSH host key (pinned in known_hosts, so a host rebuilt with a
    new key is an operator's decision). A kept head applies only to the same key."""
    key = conn.client.get_transport().get_remote_server_key()
    return hashlib.sha256(key.asbytes()).hexdigest()[:32]


def _head_step(argv: list[str]):
    def step(conn, host: FleetHost) -> dict[str, Any]:
        res = run_as_root(conn, host, argv, timeout=REMOTE_TIMEOUT)
        if res.exited != 0:
            raise OpsError((res.stderr or res.stdout).strip()[-300:] or f"exit {res.exited}")
        head = json.loads(res.stdout.strip().splitlines()[-1])
        return {"seq": head["seq"], "hash": head["hash"], "host_key": host_key_id(conn)}

    return step


def record_on_hosts(hosts: list[FleetHost], *, action: str, results: dict[str, str],
                    who: str, correlation_id: str, duration: float,
                    details: dict[str, str]) -> tuple[dict[str, dict], dict[str, str]]:
    """One `ark audit record` per host; returns (heads by host, errors by host)."""
    def argv_for(h: FleetHost) -> list[str]:
        argv = [ARK, "audit", "record", "--action", action,
                "--result", results.get(h.name, "failed"), "--who", who,
                "--where", h.name, "--correlation-id", correlation_id,
                "--duration", f"{duration:.3f}", "--arg", f"ssh_user={h.user}"]
        if details.get(h.name):
            argv += ["--detail", str(redact(details[h.name]))[:500]]
        return argv

    outcomes = run_everywhere(hosts, lambda conn, h: _head_step(argv_for(h))(conn, h))
    heads = {o.host: o.value for o in outcomes if o.ok}
    errors = {o.host: o.error or "?" for o in outcomes if not o.ok}
    return heads, errors


# --- the context manager --------------------------------------------------------------------


class ControlAction:
    def __init__(self, action: str, args: dict[str, Any], inventory: str | None,
                 limit: str | None):
        self.action, self.args, self.inventory, self.limit = action, args, inventory, limit
        self.identity = AuditIdentity.new()
        self.who, self.correlation_id = self.identity.who, self.identity.correlation_id
        self.hosts: dict[str, str] = {}  # host -> ok | failed
        self.details: dict[str, str] = {}
        self.failure: str | None = None  # set by mark_failed: the action failed as a whole
        self.log = AuditLog(state_dir(inventory))

    def outcomes(self, outcomes: list[HostOutcome]) -> None:
        for o in outcomes:
            self.hosts[o.host] = "ok" if o.ok else "failed"
            if not o.ok:
                self.details[o.host] = o.error or "failed"

    def recap(self, recap: dict[str, dict[str, int]]) -> None:
        """A PLAY RECAP: failed or unreachable tasks make that host failed."""
        for host, counts in recap.items():
            bad = counts.get("failed", 0) + counts.get("unreachable", 0)
            self.hosts[host] = "failed" if bad else "ok"
            if bad:
                self.details[host] = f"failed={counts.get('failed', 0)} " \
                                     f"unreachable={counts.get('unreachable', 0)}"

    def mark_failed(self, why: str) -> None:
        self.failure = why

    def overall(self) -> str:
        states = set(self.hosts.values())
        if self.failure:
            return "failed"
        if not states:
            return "ok"
        if states == {"ok"}:
            return "ok"
        return "failed" if states == {"failed"} else "partial"

    def _targets(self) -> list[FleetHost]:
        inv = inventory_file(self.inventory)
        if not inv.exists():
            return []
        targets = inventory_hosts(inv, self.limit)
        return [h for h in targets if not self.hosts or h.name in self.hosts]

    def finish(self, result: str, duration: float, why: str | None) -> None:
        try:
            targets = self._targets()
        except OpsError as exc:
            targets, why = [], f"{why or ''} (hosts not reached: {exc})".strip()
        for h in targets:
            self.hosts.setdefault(h.name, "ok" if result == "ok" else "failed")
        t0 = time.monotonic()
        heads, errors = record_on_hosts(
            targets, action=self.action, results=self.hosts, who=self.who,
            correlation_id=self.correlation_id, duration=duration, details=self.details)
        keep_heads(self.inventory, heads)
        # What recording cost this action (besides two local fsync'd appends).
        self.overhead = (len(heads) + 2, time.monotonic() - t0)
        per_host = "; ".join(f"{h}: {r}" + (f" ({self.details[h]})" if h in self.details else "")
                             for h, r in sorted(self.hosts.items()))
        unrecorded = "; ".join(f"{h}: host record not written ({e})"
                               for h, e in sorted(errors.items()))
        cost = f"audit: {self.overhead[0]} record(s), hosts' records took " \
               f"{self.overhead[1]:.2f}s"
        detail = " | ".join(x for x in (why, per_host, unrecorded, cost) if x)
        self.log.append(action=self.action, result=result, args=self.args, who=self.who,
                        where=f"control:{socket.gethostname()}", duration=duration,
                        correlation_id=self.correlation_id, detail=detail)


@contextlib.contextmanager
def audit_action(action: str, args: dict[str, Any], inventory: str | None,
                 limit: str | None = None) -> Iterator[ControlAction]:
    """`started` on the control node, then the result on the control node and each target
    host — also when the block raises or is interrupted."""
    rec = ControlAction(action, {**args, "inventory": str(inventory_dir(inventory)),
                                 "limit": limit}, inventory, limit)
    rec.log.append(action=action, result="started", args=rec.args, who=rec.who,
                   where=f"control:{socket.gethostname()}",
                   correlation_id=rec.correlation_id)
    t0 = time.monotonic()
    try:
        yield rec
    except BaseException as exc:
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)[:300]
        if getattr(exc, "result", None) is not None and hasattr(exc.result, "recap"):
            rec.recap(exc.result.recap)  # a failed playbook still says which host failed
        rec.finish("failed" if not rec.hosts or rec.overall() == "ok" else rec.overall(),
                   time.monotonic() - t0, why)
        raise
    rec.finish(rec.overall(), time.monotonic() - t0, rec.failure)


@contextlib.contextmanager
def maybe(condition: bool, manager, *args: Any) -> Iterator[Any]:
    """`manager(*args)` when the condition holds, else nothing (yields None)."""
    if not condition:
        yield None
        return
    with manager(*args) as value:
        yield value
