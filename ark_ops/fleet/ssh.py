"""Fleet-wide work over SSH with Fabric: the same step on every host, in parallel.

Why two ways to run things on hosts, and where each is used: deploy and verify go through
Ansible (idempotent state, templates, a PLAY RECAP; ~1 s per task round trip is fine there).
Everything that must act *now* on every host - panic (REC_01: <= 1 s for 4 hosts), recover,
DR bundles, audit records, config history - goes through this module: one Fabric connection
per host, in parallel, one command each, no Python needed on the host (panic works with the
venv broken and Redis down). An Ansible ad-hoc run costs seconds per host before the first
command runs, so it cannot meet panic's budget.

To keep that second path from drifting from the first, it shares Ansible's inputs: hosts and
their connection and become settings come from the same inventory through Ansible's own
parser (--limit means what it means to ansible-playbook; ark_ops.fleet.hostaccess turns the vars
into one login + sudo), and every remote script starts from one prelude
(ark_ops/fleet/remote/prelude.sh). Host keys are checked against the inventory's known_hosts; an
unknown key is refused, never added.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from ark_ops.errors import OpsError
from ark_ops.fleet import vault
from ark_ops.fleet.hostaccess import Access, Become, access_from_vars

CONNECT_TIMEOUT = 5
# Remote commands report through their output and exit code: never echo, never raise
# on non-zero (the caller decides), and never forward our stdin (there is none under
# pytest or cron, and Invoke would fail reading it).
RUN_DEFAULTS = {"run": {"hide": True, "warn": True, "in_stream": False}}


def remote_script(name: str, *args: str, body: str | None = None) -> str:
    """A command running ark_ops/fleet/remote/NAME (or `body`, a script kept elsewhere, such as the
    host-side panic in ark_runtime), after the shared prelude, with arguments. The script
    travels in the command line rather than on stdin, which Invoke feeds slowly (seconds per
    script)."""
    remote = resources.files("ark_ops.fleet.remote")
    text = remote.joinpath("prelude.sh").read_text() + (
        body if body is not None else remote.joinpath(name).read_text())
    return " ".join(["sh", "-c", shlex.quote(text), name, *map(shlex.quote, args)])


@dataclass(frozen=True)
class FleetHost:
    name: str
    address: str
    user: str = "root"
    port: int = 22
    key_file: str | None = None
    known_hosts: str | None = None
    vars: dict = field(default_factory=dict, compare=False, hash=False)
    become: Become = field(default_factory=Become, compare=False, hash=False)

    @classmethod
    def from_access(cls, name: str, access: Access, host_vars: dict) -> FleetHost:
        return cls(name=name, address=access.address, user=access.user, port=access.port,
                   key_file=access.key_file, known_hosts=access.known_hosts,
                   vars=host_vars, become=access.become)

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


def run_as_root(conn: Connection, host: FleetHost, command: str | list[str],
                timeout: int = 60):
    """`command` (a shell string, or an argv to quote) on the host as root: directly when
    we logged in as root, else through sudo as the inventory's become settings say (a
    password, if any, answers sudo's prompt over the channel, never on the command line)."""
    if not isinstance(command, str):
        command = " ".join(shlex.quote(a) for a in command)
    return conn.run(host.become.wrap(command), timeout=timeout,
                    watchers=host.become.watchers())


@contextlib.contextmanager
def user_tempdir(conn: Connection) -> Iterator[str]:
    """A fresh directory of the SSH user's own (mode 0700, in its home) for files that
    pass between the control node and root on the host; removed afterwards with whatever
    is in it (the user owns the directory, so it may delete what root left there too)."""
    res = conn.run('mktemp -d "${HOME:-/tmp}/.ark-ops.XXXXXXXX"', timeout=CONNECT_TIMEOUT * 6)
    path = res.stdout.strip()
    if res.exited != 0 or not path.startswith("/"):
        raise OpsError(f"could not make a temporary directory: {res.stderr.strip()[-200:]}")
    try:
        yield path
    finally:
        conn.run(f"rm -rf -- {shlex.quote(path)}", timeout=60)


# The inventory vars fleet commands read besides the login (role defaults apply when unset).
HOST_VARS = ("ark_lab", "ark_api_port", "ark_redis_port", "ark_redis_aclfile_path",
             "ark_redis_replica_of")
# The vars a become password can hide behind a template ("{{ vault_sudo }}").
_TEMPLATED = ("ansible_become", "ansible_become_user", "ansible_become_method",
              "ansible_become_password", "ansible_become_pass", "ansible_sudo_pass",
              "ansible_user", "ansible_port", "ansible_host")


def inventory_hosts(inventory: Path, limit: str | None = None,
                    group: str = "ark") -> list[FleetHost]:
    """The group's hosts (narrowed by `limit` as ansible-playbook would) with their login and
    escalation, vault-encrypted vars opened with this command's vault secrets
    (ark_ops.fleet.vault)."""
    from ansible.errors import AnsibleError

    try:
        return _inventory_hosts(inventory, limit, group)
    except AnsibleError as exc:
        raise (vault.explain(exc, f"inventory {inventory}")
               or OpsError(f"inventory {inventory}: {vault.first_line(exc)}")) from None


def _inventory_hosts(inventory: Path, limit: str | None, group: str) -> list[FleetHost]:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.yaml.objects import AnsibleVaultEncryptedUnicode
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    loader = vault.loader()
    inv = InventoryManager(loader=loader, sources=[str(inventory)])
    variables = VariableManager(loader=loader, inventory=inv)
    if limit:
        inv.subset(limit)
    hosts = []
    if not inv.get_hosts(group):
        raise OpsError(f"no hosts in group '{group}' of {inventory}"
                       + (f" matching {limit!r}" if limit else ""))
    for h in inv.get_hosts(group):
        v = dict(variables.get_vars(host=h))
        templar = Templar(loader=loader, variables=v)
        for key in _TEMPLATED:
            if isinstance(v.get(key), AnsibleVaultEncryptedUnicode):  # an inline `!vault`
                v[key] = str(v[key].data)
            if isinstance(v.get(key), str) and templar.is_possibly_template(v[key]):
                v[key] = templar.template(v[key])
            if isinstance(v.get(key), str):
                v[key] = str(v[key])  # a plain string, never Ansible's unsafe/vault wrapper
        hosts.append(FleetHost.from_access(
            h.name, access_from_vars(h.name, v),
            {k: v[k] for k in HOST_VARS if k in v}))
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
                               error=h.become.scrub(f"{type(exc).__name__}: {exc}".strip()))

    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=min(64, len(hosts))) as pool:
        return list(pool.map(one, hosts))
