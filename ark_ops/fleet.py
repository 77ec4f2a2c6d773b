"""Fleet-wide work over SSH with Fabric: the same step on every host, in parallel.

Hosts and their connection settings come from the Ansible inventory (Ansible's own
parser, so --limit patterns mean what they mean to ansible-playbook). Host keys are
checked against the inventory's known_hosts; an unknown key is refused, never added.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from ark_ops.errors import OpsError

CONNECT_TIMEOUT = 5
# Remote commands report through their output and exit code: never echo, never raise
# on non-zero (the caller decides), and never forward our stdin (there is none under
# pytest or cron, and Invoke would fail reading it).
RUN_DEFAULTS = {"run": {"hide": True, "warn": True, "in_stream": False}}


def remote_script(name: str, *args: str) -> str:
    """A command running ark_ops/remote/NAME with arguments. The script travels in the
    command line rather than on stdin, which Invoke feeds slowly (seconds per script)."""
    body = resources.files("ark_ops.remote").joinpath(name).read_text()
    return " ".join(["sh", "-c", shlex.quote(body), name, *map(shlex.quote, args)])


@dataclass(frozen=True)
class FleetHost:
    name: str
    address: str
    user: str = "root"
    port: int = 22
    key_file: str | None = None
    known_hosts: str | None = None
    vars: dict = field(default_factory=dict, compare=False, hash=False)

    def connect(self) -> Connection:
        conn = Connection(
            host=self.address, user=self.user, port=self.port,
            connect_timeout=CONNECT_TIMEOUT, config=Config(overrides=RUN_DEFAULTS),
            connect_kwargs={
                "key_filename": [self.key_file] if self.key_file else None,
                "allow_agent": False, "look_for_keys": self.key_file is None,
                "banner_timeout": CONNECT_TIMEOUT, "auth_timeout": CONNECT_TIMEOUT,
            },
        )
        # Fabric adds unknown host keys by default; a fleet tool must not.
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if self.known_hosts:
            conn.client.load_host_keys(self.known_hosts)
        else:
            conn.client.load_system_host_keys()
        return conn


def _known_hosts_from(common_args: str) -> str | None:
    for token in shlex.split(common_args or ""):
        if token.startswith("UserKnownHostsFile="):
            return token.split("=", 1)[1]
    return None


def inventory_hosts(inventory: Path, limit: str | None = None,
                    group: str = "ark") -> list[FleetHost]:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[str(inventory)])
    variables = VariableManager(loader=loader, inventory=inv)
    if limit:
        inv.subset(limit)
    hosts = []
    if not inv.get_hosts(group):
        raise OpsError(f"no hosts in group '{group}' of {inventory}"
                       + (f" matching {limit!r}" if limit else ""))
    for h in inv.get_hosts(group):
        v = variables.get_vars(host=h)
        hosts.append(FleetHost(
            name=h.name,
            address=str(v.get("ansible_host", h.name)),
            user=str(v.get("ansible_user", "root")),
            port=int(v.get("ansible_port", 22)),
            key_file=v.get("ansible_ssh_private_key_file"),
            known_hosts=_known_hosts_from(v.get("ansible_ssh_common_args", "")),
            vars={k: v[k] for k in ("ark_lab", "ark_api_port") if k in v},
        ))
    return hosts


@dataclass
class HostOutcome:
    host: str
    ok: bool
    seconds: float
    value: Any = None
    error: str | None = None


def run_everywhere(hosts: list[FleetHost], step: Callable[[Connection, FleetHost], Any],
                   ) -> list[HostOutcome]:
    """Run `step` on every host at once; an unreachable host is a failed outcome, not
    an exception, so the other hosts still get the step."""

    def one(h: FleetHost) -> HostOutcome:
        started = time.monotonic()
        try:
            with h.connect() as conn:
                value = step(conn, h)
            return HostOutcome(h.name, True, time.monotonic() - started, value)
        except Exception as exc:  # each host's failure is reported, never fatal to others
            return HostOutcome(h.name, False, time.monotonic() - started,
                               error=f"{type(exc).__name__}: {exc}".strip())

    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=min(64, len(hosts))) as pool:
        return list(pool.map(one, hosts))
