"""A Redis user per component (issue #19 §3, SEC_01), derived from the pipeline declaration.

`acl_rules(shards)` gives each component its key patterns and commands; `render_acl_file`
writes them in Redis 7's ACL file format (`aclfile`), one line per user, with the `default`
user off. Every component gets the data categories it uses minus `@admin` and `@dangerous`
(FLUSHALL, CONFIG, DEBUG, MODULE, SHUTDOWN, KEYS, ... are all in one of them), plus exactly
the few dangerous-flagged commands its job needs by name (INFO for the exporter's memory
figures). Only `admin` (the operators' `redis-cli` user) has everything.

Key patterns follow the default layout (ARK_BUS_KEY_TAG unset): an agent writes its own
keys (marks, failures, state), the next agent's inbox and the side streams, and reads its
own inbox. The API reads every ARK key (`%R~`) and writes only what it owns: the pause hash,
the errors and dead streams, and the inboxes a dead letter is replayed into.
"""

from __future__ import annotations

from dataclasses import dataclass

from ark_runtime.bus.advert import GATED
from ark_runtime.bus.errors import PAUSE_KEY
from ark_runtime.bus.keys import (
    DEAD_STREAM,
    DECISIONS_STREAM,
    ERRORS_STREAM,
    POSITIONS_STREAM,
    inbox,
    reads_key,
    slot_tag,
)
from ark_runtime.pipeline import AGENTS, BY_NAME, consumers

# What every component's connection needs, and what none may have.
BASE = ("-@all", "+@connection", "-@admin", "-@dangerous")
DATA = ("+@read", "+@write", "+@stream", "+@hash", "+@string", "+@list", "+@keyspace",
        "+@scripting", "+@transaction", "-@admin", "-@dangerous")
# Never granted to a component, whatever its categories: checked by the tests too.
FORBIDDEN = ("FLUSHALL", "FLUSHDB", "CONFIG", "DEBUG", "MODULE", "SHUTDOWN")


@dataclass(frozen=True)
class AclUser:
    name: str
    keys: tuple[str, ...]           # ~pattern (read and write)
    read_keys: tuple[str, ...] = ()  # %R~pattern (read only)
    write_keys: tuple[str, ...] = ()  # XADD only (a selector)
    commands: tuple[str, ...] = DATA

    def rule(self, password_hash: str) -> str:
        keys = [f"~{k}" for k in self.keys] + [f"%R~{k}" for k in self.read_keys]
        # A Redis 7 selector: these keys take XADD and nothing else (no DEL, no XTRIM),
        # directly or from a script (EVALSHA declares them with the dead stream it reads).
        append_only = ["(" + " ".join([f"~{DEAD_STREAM}", *(f"~{k}" for k in self.write_keys),
                                       "-@all", "+xadd", "+eval", "+evalsha"]) + ")"] \
            if self.write_keys else []
        return " ".join(["user", self.name, "on", f"#{password_hash}", "resetchannels",
                         *keys, *BASE, *self.commands, *append_only])


def instances(shards: int) -> list[tuple[str, str]]:
    """(instance, agent) for every running agent: a sharded agent once per shard."""
    out = []
    for agent in AGENTS:
        if agent.sharded:
            out += [(agent.name if k == 0 else f"{agent.name}-{k}", agent.name)
                    for k in range(shards)]
        else:
            out.append((agent.name, agent.name))
    return out


# Types also broadcast on a side stream for readers outside the pipeline (console, trace).
BROADCAST = {"hrm.decision": DECISIONS_STREAM, "position.filled": POSITIONS_STREAM,
             "position.closed": POSITIONS_STREAM}


def _downstream(agent: str, shards: int) -> list[str]:
    """Every stream `agent` writes what it emits to: the inboxes of the agents that consume
    each of its outputs (each shard's, for a sharded one) and the broadcast side streams."""
    out: list[str] = []
    for message_type in BY_NAME[agent].outputs:
        for instance, name in instances(shards):
            if message_type in BY_NAME[name].inputs and inbox(instance) not in out:
                out.append(inbox(instance))
        side = BROADCAST.get(message_type)
        if side and side not in out:
            out.append(side)
    return out


def acl_rules(shards: int = 1) -> list[AclUser]:
    side = (ERRORS_STREAM, DEAD_STREAM, PAUSE_KEY)
    users = []
    for instance, agent in instances(shards):
        own = [f"ark:*{slot_tag(instance)}*"]  # marks, failures hash, state keys
        read: list[str] = []
        if BY_NAME[agent].sharded:
            own.append(f"ark:state:{slot_tag(agent)}:*")  # per-symbol state, shared by shards
            read.append(f"ark:state:{agent}:*")  # the untagged names of earlier releases
        # A writer of a type readers must advertise first reads their advertisements.
        read += [reads_key(reader) for t in BY_NAME[agent].outputs if t in GATED
                 for reader in consumers(t)]
        if BY_NAME[agent].consumes is None:
            own.append(f"ark:{agent}:cursor:*")  # the feed cursor
            read.append("ark:stream:*")  # backlog and orphaned-shard checks (XLEN, XINFO)
            stream_in: list[str] = []
        else:
            stream_in = [inbox(instance)]
        users.append(AclUser(instance, keys=(*stream_in, *_downstream(agent, shards), *own,
                                             *side), read_keys=tuple(read)))
    pipeline_inboxes = tuple(inbox(i) for i, a in instances(shards)
                             if BY_NAME[a].consumes is not None)
    users.append(AclUser("api", keys=(PAUSE_KEY, ERRORS_STREAM, DEAD_STREAM),
                         read_keys=("ark:*",), write_keys=pipeline_inboxes))
    users.append(AclUser("exporter", keys=(), read_keys=("ark:*",),
                         commands=("+@read", "+@stream", "+@hash", "+@keyspace", "-@admin",
                                   "-@dangerous", "+info")))
    return users


# Issue #20: the Redis set's own links, each with its own user. A replica syncs from its
# primary as `replication`; a Sentinel watches, promotes and reconfigures as `sentinel` (the
# commands Redis's Sentinel documentation lists for it, and every channel for its hellos).
LINK_RULES = {
    "replication": "resetchannels -@all +psync +replconf +ping",
    "sentinel": ("allchannels -@all +multi +exec +slaveof +replicaof +ping +subscribe "
                 "+config|rewrite +role +publish +info +client|setname +client|kill "
                 "+script|kill"),
}
LINK_USERS = tuple(LINK_RULES)


def link_rule(name: str, password_hash: str) -> str:
    return f"user {name} on #{password_hash} {LINK_RULES[name]}"


# On a Sentinel: a component may only ask where the primary is (redis-py's Sentinel client
# asks MASTERS, SLAVES/REPLICAS and SENTINELS); peer Sentinels and the admin may do anything.
SENTINEL_READER = ("-@all +@connection +sentinel|get-master-addr-by-name +sentinel|masters "
                   "+sentinel|master +sentinel|slaves +sentinel|replicas +sentinel|sentinels")


def sentinel_users(password_hashes: dict[str, str], shards: int = 1) -> str:
    """The `user` lines of a Sentinel's config: `default` off, each component a reader, and
    `sentinel` (the peers) and `admin` with everything. Hashes only, as in the aclfile."""
    lines = ["user default off resetkeys resetchannels -@all"]
    lines += [f"user {name} on #{password_hashes[name]} resetchannels {SENTINEL_READER}"
              for name in component_names(shards)]
    lines += [f"user {name} on #{password_hashes[name]} allchannels +@all"
              for name in ("sentinel", "admin")]
    return "\n".join(lines) + "\n"


def admin_rule(password_hash: str) -> str:
    return f"user admin on #{password_hash} ~* &* +@all"


def legacy_default_rule(password_hash: str) -> str:
    """`default` as `requirepass` made it: everything, with the one shared password. Only
    while a host of the inventory still runs a release from before the per-component users
    (a rolling upgrade): its units log in with the password alone."""
    return f"user default on #{password_hash} ~* &* +@all"


def render_acl_file(password_hashes: dict[str, str], shards: int = 1,
                    legacy_default_hash: str | None = None) -> str:
    """The aclfile: `default` off, one line per component and the admin. `password_hashes`
    maps each user name to the SHA-256 hex of its password (the file never holds one).
    `legacy_default_hash` turns `default` on as requirepass did (legacy_default_rule)."""
    lines = [legacy_default_rule(legacy_default_hash) if legacy_default_hash
             else "user default off resetkeys resetchannels -@all"]
    for user in acl_rules(shards):
        lines.append(user.rule(password_hashes[user.name]))
    # The set's link users only where the inventory gave them a password (a set with replicas).
    lines += [link_rule(n, password_hashes[n]) for n in LINK_USERS if password_hashes.get(n)]
    lines.append(admin_rule(password_hashes["admin"]))
    return "\n".join(lines) + "\n"


def component_names(shards: int = 1) -> list[str]:
    """Every Redis user a component logs in as (not the operators' admin)."""
    return [u.name for u in acl_rules(shards)]


def user_names(shards: int = 1) -> list[str]:
    return [*component_names(shards), "admin"]
