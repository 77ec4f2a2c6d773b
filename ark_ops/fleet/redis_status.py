"""`invoke redis.status` (issue #20 §1): each ark_redis host's Redis as it sees itself: primary
or replica, the replicas a primary has with their state and lag, a replica's link to its
primary, and which ARK hosts use it (the placement's pipelines).

Each host answers `INFO replication` through the root tools' login (redis_cli.as_root_tools:
the admin user, password and TLS from the host's root-only env file, never on a command line).
A set with replicas also gets a SENTINELS section: the primary each of its Sentinels names,
with its quorum, asked from a host of the set (redis_sentinel.masters_command).
Exit 0 when every Redis and Sentinel answered and each set's Sentinels name one primary, 1
otherwise (the table still lists every host).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TextIO

from ark_ops import placement
from ark_ops.errors import OpsError
from ark_ops.fleet.logs import ssh_argv, ssh_input
from ark_ops.fleet.redis_cli import remote_command
from ark_ops.fleet.redis_sentinel import (
    agreement,
    masters_command,
    parse_masters,
    redis_sets,
    run_on,
    settled_command,
)
from ark_ops.fleet.ssh import FleetHost

_REPLICA_LINE = re.compile(r"slave\d+")


@dataclass
class Replication:
    role: str  # "primary" or "replica"
    offset: int = 0
    replicas: list[dict[str, str]] = field(default_factory=list)  # ip, port, state, offset, lag
    primary: str = ""  # a replica's primary, host:port
    link: str = ""  # a replica's master_link_status: up / down


def parse_info(text: str) -> Replication:
    """INFO replication's `key:value` lines (Redis 7 and 8 spell the roles master/slave)."""
    info = dict(line.strip().split(":", 1) for line in text.splitlines()
                if ":" in line and not line.startswith("#"))
    if "role" not in info:
        raise OpsError("not an INFO replication answer: " + text.strip()[:120])
    if info["role"] == "slave":
        return Replication("replica", int(info.get("slave_repl_offset", 0) or 0),
                           primary=f"{info.get('master_host', '?')}:{info.get('master_port', '?')}",
                           link=info.get("master_link_status", "?"))
    replicas = [dict(kv.split("=", 1) for kv in value.split(",") if "=" in kv)
                for key, value in info.items() if _REPLICA_LINE.fullmatch(key)]
    return Replication("primary", int(info.get("master_repl_offset", 0) or 0), replicas)


@dataclass
class HostStatus:
    host: str
    used_by: list[str]
    replication: Replication | None = None
    error: str = ""


def render(rows: list[HostStatus]) -> str:
    out = [f"{'REDIS HOST':<16} {'ROLE':<8} {'OFFSET':>12}  REPLICAS / PRIMARY   USED BY"]
    for row in rows:
        users = ", ".join(row.used_by) or "-"
        rep = row.replication
        if rep is None:
            out.append(f"{row.host:<16} {'?':<8} {'':>12}  unreachable: {row.error}   {users}")
            continue
        if rep.role == "primary":
            what = "; ".join(f"{r.get('ip')}:{r.get('port')} {r.get('state')} lag "
                             f"{r.get('lag')} s, {rep.offset - int(r.get('offset', 0) or 0)} "
                             "bytes behind" for r in rep.replicas) or "no replicas"
        else:
            what = f"replica of {rep.primary}, link {rep.link}"
        out.append(f"{row.host:<16} {rep.role:<8} {rep.offset:>12}  {what}   {users}")
    return "\n".join(out)


def _used_by(redis_hosts: list[FleetHost], ark_hosts: list[FleetHost]) -> dict[str, list[str]]:
    names = [h.name for h in redis_hosts]
    replica_of = {h.name: h.vars.get("ark_redis_replica_of") for h in redis_hosts}
    users: dict[str, list[str]] = {n: [] for n in names}
    for host in ark_hosts:
        server = placement.redis_server(host.name, names,
                                        host.vars.get("ark_runtime_redis_server"), replica_of)
        users.setdefault(server, []).append(host.name)
    return users


def run(inventory: str | None, out: TextIO = sys.stdout, runner=subprocess.run) -> int:
    from ark_ops.fleet.ssh import inventory_hosts
    from ark_ops.inventories import resolve_inventory

    inv = resolve_inventory(inventory, bring_up=False)
    redis_hosts = inventory_hosts(inv, group="ark_redis")
    if not redis_hosts:
        raise OpsError(f"inventory {inv} has no ark_redis host")
    users = _used_by(redis_hosts, inventory_hosts(inv))
    command = remote_command(["INFO", "replication"])
    rows = []
    for host in redis_hosts:
        row = HostStatus(host.name, sorted(users.get(host.name, [])))
        try:
            res = runner(ssh_argv(host, command), capture_output=True, text=True,
                         input=ssh_input(host), timeout=60)
            if res.returncode != 0:
                said = res.stderr.strip().splitlines()
                row.error = host.become.scrub(said[-1] if said else f"exit {res.returncode}")
            else:
                row.replication = parse_info(res.stdout)
        except (OSError, subprocess.TimeoutExpired, OpsError) as exc:
            row.error = host.become.scrub(str(exc))[:200]
        rows.append(row)
    out.write(render(rows) + "\n")
    sentinels_ok = _sentinels(redis_hosts, out, runner)
    return 0 if all(r.replication is not None for r in rows) and sentinels_ok else 1


def _sentinels(redis_hosts: list[FleetHost], out: TextIO, runner) -> bool:
    """A SENTINELS section per set with replicas (none for a set alone: its output is as it
    was); True when each set's Sentinels all answered and agree."""
    try:
        sets = redis_sets(redis_hosts)
    except OpsError as exc:
        out.write(f"\nSENTINELS not asked: {exc}\n")
        return False
    by_name = {h.name: h for h in redis_hosts}
    ok = True
    for primary, replicas in sorted(sets.items()):
        if replicas:
            text, healthy = sentinel_section(primary, [by_name[n] for n in [primary, *replicas]],
                                             runner)
            out.write("\n" + text + "\n")
            ok = ok and healthy
    return ok


def sentinel_section(primary: str, hosts: list[FleetHost], runner) -> tuple[str, bool]:
    """Asked from the first host of the set that answers; (the section, healthy)."""
    expected = placement.sentinel_master(primary)
    errors = []
    for host in hosts:
        answer = run_on(host, masters_command(expected), runner, 60)
        if answer.returncode == 0:
            try:
                master, views = parse_masters(answer.stdout)
                break
            except OpsError as exc:
                answer.error = host.become.scrub(str(exc))
        errors.append(f"{host.name}: {answer.error}")
    else:
        return (f"SENTINELS of {primary}'s Redis set (master {expected}): not asked: "
                + "; ".join(errors)), False
    lines = [f"SENTINELS of {primary}'s Redis set (master {master}, asked from {host.name})",
             f"  {'SENTINEL':<24} {'NAMES PRIMARY':<24} {'FLAGS':<16} {'QUORUM':>6}  "
             "OTHER SENTINELS"]
    for v in views:
        if v.error:
            lines.append(f"  {v.address:<24} no answer: {v.error}")
        else:
            lines.append(f"  {v.address:<24} {v.primary:<24} {v.flags:<16} {v.quorum:>6}  "
                         f"{v.others}")
    healthy, summary = agreement(views)
    lines.append("  " + summary)
    settled, line = _settled(host, expected, runner)
    lines.append("  " + line)
    return "\n".join(lines), healthy and settled


def _settled(host: FleetHost, master: str, runner) -> tuple[bool, str]:
    """Whether every Sentinel that answers sees each replica linked and none reporting itself
    primary (settled_command: what `invoke redis.failover` waits for before it asks)."""
    answer = run_on(host, settled_command(master), runner, 60)
    behind = answer.stdout.strip().splitlines()
    if answer.returncode == 0:
        return True, "settled: every Sentinel that answers sees its replicas linked"
    if answer.returncode == 1 and behind:
        return False, (f"NOT SETTLED: Sentinel {behind[-1]} still sees a replica that is not "
                       "linked or reports itself primary (a host that just came back; "
                       "`invoke redis.failover` waits for this)")
    return False, f"settled not known: {answer.error or 'no answer'}"
