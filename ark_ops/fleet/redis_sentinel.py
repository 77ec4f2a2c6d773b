"""Issue #20 §1: the host-side lines that ask a Redis set's Sentinels (`invoke redis.failover`,
the SENTINELS section of `invoke redis.status`), and what their answers say.

The lines run as root on a host of the set, over SSH as every fleet command does. The
Sentinels' addresses and master name come from that host's root-only env file
(ARK_REDIS_SENTINELS, ARK_REDIS_SENTINEL_MASTER), and each redis-cli logs in as the root tools
do (redis_cli.as_root_tools: admin, the password through REDISCLI_AUTH, TLS when Redis has
it: the Sentinels share both), so no address, name or password is sent from here.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections import Counter
from dataclasses import dataclass

from ark_ops import placement
from ark_ops.errors import OpsError
from ark_ops.fleet.logs import ssh_argv, ssh_input
from ark_ops.fleet.redis_cli import ENV_FILE, as_root_tools
from ark_ops.fleet.ssh import FleetHost

ASK_TIMEOUT_S = 10  # one Sentinel's answer: an address that drops packets must not hold the rest
ASKED = "asking Sentinel"  # the failover line's mark that the FAILOVER was sent
UNSETTLED_EXIT = 5  # the failover line's exit when the set never settled: nothing was asked
# The status line's own lines: which set, which Sentinel answers next, what redis-cli said on
# stderr (kept apart: a login warning must not spoil the answer after it).
MASTER_MARK, SENTINEL_MARK, STDERR_MARK = "#ark-master ", "#ark-sentinel ", "#ark-stderr "


def redis_sets(redis_hosts: list[FleetHost]) -> dict[str, list[str]]:
    """{primary: its replicas} of the ark_redis hosts (placement.redis_sets)."""
    try:
        return placement.redis_sets([h.name for h in redis_hosts],
                                    {h.name: h.vars.get("ark_redis_replica_of")
                                     for h in redis_hosts})
    except placement.PlacementError as exc:
        raise OpsError(f"the inventory's Redis sets: {exc}") from None


def _prelude(master: str, env_file: str) -> str:
    """Reads the env file, refuses a host without Sentinels or one whose Sentinels watch
    another set, and defines `ark_sentinel ADDR WORDS...` (SENTINEL WORDS... MASTER)."""
    login = as_root_tools(env_file, cli=f"timeout {ASK_TIMEOUT_S} redis-cli")
    return (f"set -a; . {shlex.quote(env_file)}; set +a; "
            'if [ -z "$ARK_REDIS_SENTINELS" ] || [ -z "$ARK_REDIS_SENTINEL_MASTER" ]; then '
            "echo 'the env file names no ARK_REDIS_SENTINELS or ARK_REDIS_SENTINEL_MASTER: "
            "this host has no Sentinels' >&2; exit 3; fi; "
            f'if [ "$ARK_REDIS_SENTINEL_MASTER" != {shlex.quote(master)} ]; then '
            'echo "the env file names Sentinel master $ARK_REDIS_SENTINEL_MASTER, not "'
            f"{shlex.quote(master)} >&2; exit 3; fi; "
            # host:port, or [v6]:port as ARK_REDIS_SENTINELS allows it
            'ark_sentinel() { at=$1; shift; h=${at%:*}; h=${h#\\[}; h=${h%\\]}; '
            + login + '-h "$h" -p "${at##*:}" SENTINEL "$@" "$ARK_REDIS_SENTINEL_MASTER"; }; '
            'sentinels=$(echo "$ARK_REDIS_SENTINELS" | tr , " "); ')


# One Sentinel's `SENTINEL REPLICAS` answer (a flat key/value list, one replica after the
# other) says the set has settled when it lists a replica, at least one of them is a plain
# linked candidate (flags exactly `slave`), and no replica reports itself a primary. A replica
# that just came back (a host booted with the primary's old config) reports `master` until
# the Sentinels convert it, and each Sentinel reads its role only every 10 s: a FAILOVER
# asked then is undone by a Sentinel that still sees the replica as a rogue primary and
# converts it back, 8 s after it last saw the role change, before the promotion is announced.
# Seen on the lab: the Sentinel's failover timed out and the primary stayed where it was.
_SETTLED_AWK = ("NR%2==1{k=$0;next} k==\"name\"{n++} k==\"flags\"&&$0==\"slave\"{ok++} "
                "k==\"role-reported\"&&$0!=\"slave\"{bad=1} END{exit !(n>0&&ok>0&&!bad)}")


# `unsettled_at`: the first Sentinel that answers a replica list and does not see the set
# settled (_SETTLED_AWK); nothing when all that answer do. A Sentinel that answers no replica
# list (down, or an error) has no say.
_UNSETTLED_AT = ('unsettled_at() { for s in $sentinels; do r=$(ark_sentinel "$s" REPLICAS '
                 '2>/dev/null); [ "$(printf "%s\\n" "$r" | head -n 1)" = name ] || continue; '
                 f'printf "%s\\n" "$r" | awk {shlex.quote(_SETTLED_AWK)} || '
                 '{ echo "$s"; return; }; done; }; ')


def settled_command(master: str, env_file: str = ENV_FILE) -> str:
    """Exit 0 when every Sentinel that answers sees the set settled; else exit 1 and the
    first one that does not on stdout (a drill waits for this before its next fault)."""
    return (_prelude(master, env_file) + _UNSETTLED_AT
            + 's=$(unsettled_at); [ -z "$s" ] || { echo "$s"; exit 1; }')


def failover_command(master: str, timeout: int, env_file: str = ENV_FILE) -> str:
    """The primary a Sentinel names; every Sentinel that answers seeing the set settled (at
    most `timeout` s, _SETTLED_AWK); FAILOVER; then every Sentinel asked until one names
    another primary (at most `timeout` s): `old -> new` on the last line, exit 0."""
    return (_prelude(master, env_file) + _UNSETTLED_AT
            + f"end=$(( $(date +%s) + {int(timeout)} )); "
            'while s=$(unsettled_at); [ -n "$s" ]; do '
            '[ "$(date +%s)" -lt "$end" ] || { echo "Sentinel $s still sees a replica of '
            "$ARK_REDIS_SENTINEL_MASTER that reports itself a primary or is not linked, "
            f'{int(timeout)} s on: the set has not settled (a host that just came back); '
            f'nothing was asked" >&2; exit {UNSETTLED_EXIT}; }}; sleep 1; done; '
            # ip:port, or nothing: redis-cli prints an error reply on stdout and exits 0
            + 'primary_of() { ark_sentinel "$1" GET-MASTER-ADDR-BY-NAME 2>/dev/null '
            "| paste -sd: -; }; "
            'is_addr() { case "$1" in ""|*[!0-9A-Za-z.:_-]*) return 1;; esac; p=${1##*:}; '
            '[ "$p" != "$1" ] && case "$p" in ""|*[!0-9]*) return 1;; esac; }; '
            'old=; for at in $sentinels; do old=$(primary_of "$at"); is_addr "$old" && break; '
            "old=; done; "
            '[ -n "$old" ] || { echo "no Sentinel of $ARK_REDIS_SENTINELS names a primary for '
            '$ARK_REDIS_SENTINEL_MASTER" >&2; exit 4; }; '
            f'echo "{ASKED} $at to fail over $ARK_REDIS_SENTINEL_MASTER (primary $old)"; '
            # The reply is the last line (a login warning may come first).
            'said=$(ark_sentinel "$at" FAILOVER 2>&1); '
            '[ "$(printf "%s\\n" "$said" | tail -n 1)" = OK ] || { echo "Sentinel $at refused '
            'the failover: $said" >&2; exit 1; }; '
            f"end=$(( $(date +%s) + {int(timeout)} )); "
            "while :; do for s in $sentinels; do new=$(primary_of \"$s\"); "
            'if is_addr "$new" && [ "$new" != "$old" ]; then echo "$old -> $new"; exit 0; fi; '
            'done; [ "$(date +%s)" -lt "$end" ] || break; sleep 0.5; done; '
            f'echo "the Sentinels still name $old {int(timeout)} s after the failover was asked" '
            ">&2; exit 1")


def masters_command(master: str, env_file: str = ENV_FILE) -> str:
    """Each Sentinel's `SENTINEL MASTER` answer (or its error), after a line naming it."""
    return (_prelude(master, env_file)
            + f'echo "{MASTER_MARK}$ARK_REDIS_SENTINEL_MASTER"; '
            f'for at in $sentinels; do echo "{SENTINEL_MARK}$at"; '
            '{ ark_sentinel "$at" MASTER 2>&1 1>&3 3>&- '
            f'| sed "s/^/{STDERR_MARK}/"; }} 3>&1; done')


@dataclass
class SentinelView:
    address: str
    primary: str = ""  # ip:port of the primary it names
    flags: str = ""  # of that primary: master, s_down, o_down...
    quorum: str = ""
    others: str = ""  # num-other-sentinels: the Sentinels it knows of
    error: str = ""


def parse_masters(text: str) -> tuple[str, list[SentinelView]]:
    """masters_command's output: (master name, each Sentinel's view)."""
    master, views, answers, stderrs = "", [], [], []
    for line in text.replace("\r", "").split("\n"):
        if line.startswith(MASTER_MARK):
            master = line[len(MASTER_MARK):]
        elif line.startswith(SENTINEL_MARK):
            views.append(SentinelView(line[len(SENTINEL_MARK):]))
            answers.append([])
            stderrs.append([])
        elif line.startswith(STDERR_MARK) and stderrs:
            stderrs[-1].append(line[len(STDERR_MARK):])
        elif answers:
            answers[-1].append(line)
    if not master:
        raise OpsError("not a Sentinel answer: " + text.strip()[:120])
    for view, lines, said_aside in zip(views, answers, stderrs, strict=True):
        if lines[:1] != ["name"]:  # an error reply, or redis-cli's own sentence
            view.error = " ".join(x for x in lines + said_aside if x.strip())[:200] or \
                f"no answer within {ASK_TIMEOUT_S} s"
            continue
        said = dict(zip(lines[0::2], lines[1::2], strict=False))  # an odd last line: cut off
        view.primary = f"{said.get('ip', '?')}:{said.get('port', '?')}"
        view.flags, view.quorum = said.get("flags", "?"), said.get("quorum", "?")
        view.others = said.get("num-other-sentinels", "?")
    return master, views


def agreement(views: list[SentinelView]) -> tuple[bool, str]:
    """(all answered and name one primary, the summary line)."""
    answered = [v for v in views if not v.error]
    named = Counter(v.primary for v in answered)
    line = f"{len(answered)} of {len(views)} Sentinels answered"
    if len(named) == 1:
        line += f", all naming {next(iter(named))}"
    elif named:
        line += "; they disagree: " + ", ".join(f"{p} ({n})" for p, n in named.most_common())
    quorums = {v.quorum for v in answered if v.quorum.isdigit()}
    if quorums and len(answered) < min(int(q) for q in quorums):
        line += "; fewer than the quorum: no failover can happen"
    return bool(views) and len(answered) == len(views) and len(named) == 1, line


@dataclass
class Answer:
    host: FleetHost
    returncode: int
    stdout: str = ""
    error: str = ""  # scrubbed; empty when the line exited 0
    seconds: float = 0.0
    timed_out: bool = False  # what the line did, if anything, is unknown


def run_on(host: FleetHost, command: str, runner, timeout: float) -> Answer:
    """`command` as root on `host` over SSH; the become password never in what comes back."""
    started = time.monotonic()
    try:
        res = runner(ssh_argv(host, command), capture_output=True, text=True,
                     input=ssh_input(host), timeout=timeout)
    except subprocess.TimeoutExpired:
        return Answer(host, -1, error=f"no answer within {timeout:.0f} s",
                      seconds=time.monotonic() - started, timed_out=True)
    except OSError as exc:
        return Answer(host, -1, error=host.become.scrub(str(exc))[:200],
                      seconds=time.monotonic() - started)
    said = res.stderr.strip().splitlines()
    error = "" if res.returncode == 0 else \
        host.become.scrub(said[-1] if said else f"exit {res.returncode}")[:300]
    return Answer(host, res.returncode, host.become.scrub(res.stdout), error,
                  time.monotonic() - started)
