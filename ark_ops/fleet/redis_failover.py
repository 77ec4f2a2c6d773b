"""`invoke redis.failover [--pipeline PRIMARY]` (issue #20 §1): the Sentinels promote one of a
Redis set's replicas now (a planned switch-over: before the primary's host is patched, or to
prove the failover works), and the command prints `old-ip:port -> new-ip:port`.

The set is named by its primary in the inventory (the host the others' `ark_redis_replica_of`
names); the Sentinels know it as placement.sentinel_master(that name), whichever server is
primary today. The line runs on the first host of the set that answers
(redis_sentinel.failover_command); once it has asked for the failover no other host asks
again. Audited (SEC_03). Exit 0 when the Sentinels name a new primary, 1 otherwise.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TextIO

from ark_ops import placement
from ark_ops.errors import RefusedError
from ark_ops.fleet.audit import audit_action
from ark_ops.fleet.redis_sentinel import (
    ASKED,
    UNSETTLED_EXIT,
    Answer,
    failover_command,
    redis_sets,
    run_on,
)
from ark_ops.fleet.ssh import HostOutcome

SSH_SLACK_S = 120  # beyond --timeout: SSH, sudo, and each Sentinel's own bounded answer


def choose_set(sets: dict[str, list[str]], pipeline: str | None) -> str:
    """The primary of the set to fail over: the one named, else the only one with replicas."""
    def described() -> str:
        return "; ".join(f"{p} ({', '.join(r) or 'no replicas'})" for p, r in sorted(sets.items()))

    if pipeline is None:
        with_replicas = sorted(p for p, r in sets.items() if r)
        if len(with_replicas) == 1:
            return with_replicas[0]
        why = "several Redis sets have replicas" if with_replicas else \
            "no Redis set of this inventory has replicas"
        raise RefusedError(f"{why}: name the set with --pipeline PRIMARY ({described()})")
    if pipeline not in sets:
        primary = next((p for p, r in sets.items() if pipeline in r), None)
        hint = f": it is a replica, give --pipeline {primary}" if primary else ""
        raise RefusedError(f"--pipeline {pipeline[:80]!r} is not the primary of a Redis set in "
                           f"this inventory{hint} ({described()})")
    if not sets[pipeline]:
        raise RefusedError(f"--pipeline {pipeline}: its Redis has no replicas, nothing to fail "
                           "over to")
    return pipeline


def run(inventory: str | None, pipeline: str | None = None, out: TextIO = sys.stdout,
        err: TextIO = sys.stderr, runner=subprocess.run, timeout: int = 60) -> int:
    from ark_ops.fleet.ssh import inventory_hosts
    from ark_ops.inventories import resolve_inventory

    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise RefusedError(f"--timeout must be a whole number of seconds, 1 or more, not "
                           f"{str(timeout)[:40]!r}")
    redis_hosts = inventory_hosts(resolve_inventory(inventory, bring_up=False),
                                  group="ark_redis")
    sets = redis_sets(redis_hosts)
    primary = choose_set(sets, pipeline)
    by_name = {h.name: h for h in redis_hosts}
    command = failover_command(placement.sentinel_master(primary), timeout)
    with audit_action("redis.failover", {"pipeline": primary}, inventory, None) as rec:
        tried: list[Answer] = []
        for name in [primary, *sets[primary]]:
            # The line may wait `timeout` for the set to settle, then as long for the move.
            answer = run_on(by_name[name], command, runner, 2 * timeout + SSH_SLACK_S)
            tried.append(answer)
            out.write(answer.stdout)
            # Once the Sentinels were asked (or may have been: no answer in time), another
            # host asking again could move the primary twice. A set that never settled is
            # the same set from every host: asking elsewhere would only wait as long again.
            if answer.returncode in (0, UNSETTLED_EXIT) or ASKED in answer.stdout \
                    or answer.timed_out:
                break
        last = tried[-1]
        moved = last.returncode == 0 and " -> " in last.stdout
        # Done: the host that did it is the record's (one unreachable before it is no part
        # of the result). Not done: every host tried, failed.
        rec.outcomes([HostOutcome(a.host.name, moved, a.seconds, error=a.error or None)
                      for a in ([last] if moved else tried)])
        if not moved:
            for a in tried:
                err.write(f"{a.host.name}: {a.error or 'no new primary named'}\n")
            rec.mark_failed(f"no new primary for {primary}'s Redis set: {last.error}"[:300])
    return 0 if moved else 1
