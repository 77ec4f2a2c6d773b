"""Joey sharded by symbol (issue #12): which shard a bar goes to, and the shards' names.

Shard 0 is the plain `joey` (inbox `ark:stream:joey`, unit `ark-agent@joey`), so one shard is
exactly the unsharded pipeline. Shard k > 0 is the instance `joey-k` with inbox
`ark:stream:joey-k` in the same group name. Routing is crc32(symbol) mod N: stable across
processes, hosts and Python versions (the built-in hash() of a str is salted per process), so
every bar of a symbol goes to one stream and one process, which keeps its order.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import redis

from ark_runtime.bus.streams import inbox
from ark_runtime.pipeline import SHARDED

SHARDED_AGENT = SHARDED[0]  # the one sharded agent of ark_runtime/pipeline.py
MAX_SHARDS = 64
_INSTANCE_RE = re.compile(rf"{SHARDED_AGENT}-([1-9][0-9]?)")


def shard_of(symbol: str, shards: int) -> int:
    """The shard (0..shards-1) that handles every bar of `symbol`."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shard count must be 1..{MAX_SHARDS}, got {shards}")
    return zlib.crc32(symbol.encode()) % shards


def shard_name(shard: int) -> str:
    """The instance name of a shard: `joey` for shard 0, `joey-<k>` otherwise."""
    if not 0 <= shard < MAX_SHARDS:
        raise ValueError(f"shard index must be 0..{MAX_SHARDS - 1}, got {shard}")
    return SHARDED_AGENT if shard == 0 else f"{SHARDED_AGENT}-{shard}"


def shard_names(shards: int) -> list[str]:
    """Every shard's instance name for a shard count (`["joey"]` for 1)."""
    return [shard_name(k) for k in range(shards)]


def parse_instance(name: str) -> tuple[str, int]:
    """`joey-2` -> ("joey", 2); any other name -> (name, 0). Validated by the caller."""
    match = _INSTANCE_RE.fullmatch(name)
    return (SHARDED_AGENT, int(match.group(1))) if match else (name, 0)


def backlog(client: Any, stream: str, group: str = SHARDED_AGENT) -> int:
    """Entries of `stream` its group has not finished: pending plus never delivered."""
    try:
        groups = client.xinfo_groups(stream)
        last = client.xinfo_stream(stream)["last-generated-id"]
    except redis.ResponseError:  # no such stream: nothing waits in it
        return 0
    for info in groups:
        if info["name"] == group:
            caught_up = info["last-delivered-id"] == last
            # lag is None when Redis cannot tell (entries deleted): then at least one waits.
            lag = info.get("lag")
            undelivered = 0 if caught_up else int(lag) if lag else 1
            return int(info["pending"]) + undelivered
    return int(client.xlen(stream))  # no group yet: everything waits


def orphaned(client: Any, shards: int) -> dict[str, int]:
    """Shard streams beyond `shards` (left by a larger shard count) that still hold bars no
    Joey has finished: {stream: entries}. Nobody reads them under this count, so emitting on
    would reorder those symbols (their old bars would wait while new ones pass)."""
    # The possible names are few (MAX_SHARDS): ask for them by name rather than SCAN all keys.
    candidates = [inbox(shard_name(k)) for k in range(shards, MAX_SHARDS)]
    with client.pipeline(transaction=False) as pipe:
        for stream in candidates:
            pipe.exists(stream)
        present = [s for s, there in zip(candidates, pipe.execute(), strict=True) if there]
    found: dict[str, int] = {}
    for stream in present:
        waiting = backlog(client, stream)
        if waiting:
            found[stream] = waiting
    return found
