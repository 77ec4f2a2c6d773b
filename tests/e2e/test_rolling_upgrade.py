"""Rolling upgrades on the lab (issue 20 §3): a 3-host split fleet (ark-lab-1 Redis +
Prometheus, ark-lab-2 API + Kyle + Kenny, ark-lab-3 Joey + HRM) is deployed from the previous
release (PREVIOUS_RELEASE, with that commit's own roles and wheel) under a paced synthetic feed;
then
1. a release with a planted fault (HRM runs but reads nothing) is rolled with ark-lab-3 as the
   canary: its gate finds no fresh decision, the roll stops there, ark-lab-3 is back on the
   previous release's venv and config, and the other hosts were never touched;
2. HEAD is rolled over the fleet one host at a time: every decision of the feed is made once
   (none lost, none duplicated, against the in-process oracle) and the longest gap between
   decisions during the roll is reported;
3. the rolled fleet's Redis is SIGKILLed five times under the same feed (issue 19 §2, the
   lab half of the five-crash test): again every decision once, and the seconds without a
   decision around each kill reported. It shares this module's fleet and feed rather than
   deploying its own;
4. the same fleet is deployed as the `ha` topology (issue 20 §1: replicas of ark-lab-1's Redis
   on the other two hosts, a Sentinel on each) and drilled under the same feed: ark-lab-1
   powered off, then the primary's redis-server SIGKILLed and kept down; each time a replica
   is promoted, the pipeline flows again by itself, nothing is lost or made twice, and the
   old primary rejoins as a replica; `invoke verify` is green afterwards.

One lab for the module, under the lab lock; test 1 first (it is the cheaper one). Needs root
and the lab tools; skipped otherwise.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ark_ops import placement
from ark_ops.deploy import run as deploy_mod
from ark_ops.fleet.audit import state_dir
from ark_ops.fleet.redis_sentinel import settled_command
from ark_ops.lab import host as hostmod
from ark_ops.lab import lab
from ark_ops.lab.config import LabHost, LabPaths
from ark_ops.paths import REPO_ROOT
from ark_ops.rollout import run as rollout
from ark_ops.verify.run import verify
from ark_runtime.host.audit.chain import iter_records
from ark_runtime.hrm import RuleEngine, load_ruleset
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector
from ark_runtime.planner import AccountConfig, PlanError, plan_trade
from tests.support.lab_shell import on, wait_for
from tests.support.releases import PREVIOUS_RELEASE, extract

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

# The release before envelope schema versions and rolling deploys (main when this was built).
REDIS, API, AGENTS = "ark-lab-1", "ark-lab-2", "ark-lab-3"
HOSTS = (REDIS, API, AGENTS)
SYMBOLS = ("AAPL", "MSFT", "BTC-USD")
SEED, BARS_PER_SYMBOL, RATE = 7, 200_000, 100  # ~10 decisions/s; the feed outlasts the module
INVENTORY = LabPaths.default().inventory / "hosts.yml"
ENV = "set -a; . /etc/ark/env/infrastructure.env; set +a; "
PY = "/opt/ark/venv/bin/python -c "
# Reads the pipeline's Redis on ark-lab-1 with the settings its units get.
_BUS = ("import json; from ark_runtime.bus.streams import connect, DECISIONS_STREAM, inbox; "
        "r = connect(); ")
DECISIONS = _BUS + (
    "out = []\n"
    "for eid, f in r.xrange(DECISIONS_STREAM):\n"
    "    p = json.loads(f['envelope'])['payload']\n"
    "    out.append([eid, p['plan']['symbol'], p['plan']['pattern'], p['plan']['pattern_ts'],"
    " p['decision']['approved']])\n"
    "print(json.dumps(out))")
# What is still to do in each inbox: pending entries, and entries after the group's last
# delivered id, counted from the stream itself. Not XINFO's `lag`: Redis derives it from
# counters (entries added minus the group's read counter), and after the roll it said 321
# for a group whose pending list was empty and whose inbox held only its last delivered entry.
BACKLOG = _BUS + (
    "n = 0\n"
    "for a in ('joey', 'kenny', 'hrm'):\n"
    "    for g in (r.xinfo_groups(inbox(a)) if r.exists(inbox(a)) else []):\n"
    "        n += int(g['pending']) + len(r.xrange(inbox(a), '(' + g['last-delivered-id']))\n"
    "c = [int(r.get(k)) for k in r.scan_iter('*kyle:cursor*')]\n"
    "print(json.dumps([n, c]))")
GROUPS = _BUS + (
    "print(json.dumps({a: [r.xlen(inbox(a)), r.xinfo_stream(inbox(a))['last-generated-id'], "
    "[{k: g.get(k) for k in ('name', 'pending', 'lag', "
    "'entries-read', 'last-delivered-id', 'consumers')} for g in r.xinfo_groups(inbox(a))]] "
    "for a in ('joey', 'kenny', 'hrm', 'executor') if r.exists(inbox(a))} | "
    "{'pause': r.hgetall('ark:pause')}, default=str))")
# The planted fault: an HRM that starts, tells systemd it is ready and keeps its watchdog fed,
# but reads nothing. The deploy passes (every unit is active); only the gate can see that no
# decision is made. Nothing is consumed, so nothing is retried or lost.
# Appended to hrm.py: it replaces whatever step() the class defines, wherever it is.
PLANTED = ("\n\ndef _planted_step(self) -> None:  # planted by test_rolling_upgrade.py\n"
           "    self.stop_event.wait(0.2)\n\n\nHrm.step = _planted_step\n")


def bus(script: str):
    # From the API host: it stays up in every drill, and its clients follow the Sentinels.
    proc = on(API, ENV + PY + shlex.quote(script), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def venv_of(host: str) -> str:
    return on(host, "readlink -f /opt/ark/venv", check=True).stdout.strip()


def config_head(host: str) -> int:
    rows = on(host, "/opt/ark/venv/bin/ark config list --json --limit 1", check=True).stdout
    return int(json.loads(rows.strip().splitlines()[-1])["version"])


def release_tree(dest: Path, commit: str | None) -> Path:
    """`commit`'s tree (git archive), or the working tree's tracked files; the shared venv."""
    dest.mkdir(parents=True)
    if commit:
        extract(commit, dest)
    else:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True,
                               capture_output=True, text=True).stdout.split("\0")
        for rel in filter(None, files):
            if (REPO_ROOT / rel).is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO_ROOT / rel, dest / rel)
    (dest / ".venv").symlink_to(REPO_ROOT / ".venv")
    return dest


def invoke_in(tree: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`invoke ARGS` run from another release's tree (its tasks, roles and wheel)."""
    env = {**os.environ, "ARK_LAB_INVENTORY": str(INVENTORY.parent), "ARK_ACTOR": "e2e-roll"}
    return subprocess.run([sys.executable, "-m", "invoke", *args, "--inventory", str(INVENTORY)],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)  # Ansible refuses a non-blocking stdin


def oracle(positions: int) -> dict[tuple[str, str, str], bool]:
    """The decisions of the feed's first `positions` bars, made in-process by the same domain
    code (the previous release's and HEAD's agree on it)."""
    detector, account = PatternDetector(), AccountConfig(account_size=100000)
    engine = RuleEngine(load_ruleset())
    out = {}
    feed = SyntheticAdapter(list(SYMBOLS), seed=SEED, bars=BARS_PER_SYMBOL)
    for bar in itertools.islice(feed, positions):
        for pattern in detector.update(bar):
            try:
                plan = plan_trade(pattern, account)
            except PlanError:
                continue
            out[(plan.symbol, plan.pattern, plan.pattern_ts.isoformat())] = \
                engine.evaluate(plan.rule_input()).approved
    return out


def key(row: list) -> tuple[str, str, str]:
    return row[1], row[2], row[3].replace("Z", "+00:00")


def longest_gap_s(ids: list[str], start_ms: int, end_ms: int) -> float:
    """The longest stretch of [start, end] without a decision, from stream ids (ms)."""
    times = [start_ms] + [int(i.split("-")[0]) for i in ids
                          if start_ms <= int(i.split("-")[0]) <= end_ms] + [end_ms]
    return max(b - a for a, b in itertools.pairwise(times)) / 1000


def fresh_decision_after(ms: int) -> bool:
    rows = bus(_BUS + "e = r.xrevrange(DECISIONS_STREAM, count=1); print(json.dumps("
                      "[x[0] for x in e]))")
    return bool(rows) and int(rows[0].split("-")[0]) > ms


@dataclass
class Held:
    """Every decision on the bus, held against the oracle of the bars Kyle emitted."""
    position: int
    expected: dict[tuple[str, str, str], bool]
    rows: list[list]

    @property
    def ids(self) -> list[str]:
        return [r[0] for r in self.rows]

    @property
    def got(self) -> list[tuple[str, str, str]]:
        return [key(r) for r in self.rows]

    @property
    def duplicated(self) -> int:
        return len(self.got) - len(set(self.got))

    @property
    def lost(self) -> list[tuple[str, str, str]]:
        return sorted(set(self.expected) - set(self.got))

    @property
    def unexpected(self) -> list[tuple[str, str, str]]:
        """Decisions the fault-free run never made (e.g. on a window with a gap)."""
        return sorted(set(self.got) - set(self.expected))

    @property
    def differing(self) -> int:
        # Approvals may differ from the oracle's once HRM's circuit breakers, fed by the
        # ledger, trip: reported, not asserted. Which decisions exist, and how often, is.
        approved = {key(r): r[4] for r in self.rows}
        return sum(approved[k] != self.expected[k] for k in set(self.got) & set(self.expected))

    def __str__(self) -> str:
        return (f"{self.position} bars, {len(self.expected)} decisions expected, "
                f"{len(self.got)} made, lost {len(self.lost)}, duplicated {self.duplicated}, "
                f"unexpected {len(self.unexpected)}, approval differs from the oracle "
                f"{self.differing}")

    def assert_exactly_once(self) -> None:
        assert len(self.expected) > 1000, self
        assert self.duplicated == 0, self
        assert self.lost == [], (str(self), self.lost[:5])
        assert self.unexpected == [], (str(self), self.unexpected[:5])


def drained_against_oracle() -> Held:
    """Stop the feed, let the pipeline drain, and hold every decision against the oracle."""
    on(API, "systemctl stop ark-agent@kyle.service", check=True)
    try:
        backlog = wait_for(lambda: (lambda b: b if b[0] == 0 else None)(bus(BACKLOG)), 180,
                           "the pipeline to drain")
    except AssertionError as exc:  # say which inbox holds what
        raise AssertionError(f"{exc}: {bus(GROUPS)}") from None
    [position] = backlog[1]
    return Held(position, oracle(position), bus(DECISIONS))


@pytest.fixture(scope="module")
def old_fleet(tmp_path_factory):
    """3 split hosts running PREVIOUS_RELEASE under the paced feed."""
    lab.up(hosts=3, topology="split", log=lambda *_: None)
    group_vars = INVENTORY.parent / "group_vars"
    group_vars.mkdir(exist_ok=True)
    (group_vars / "all.yml").write_text(
        "ark_lab: false\nark_runtime_env:\n  ARK_FEED: synthetic\n"
        f"  ARK_FEED_SYMBOLS: {','.join(SYMBOLS)}\n  ARK_FEED_SEED: '{SEED}'\n"
        f"  ARK_FEED_BARS: '{BARS_PER_SYMBOL}'\n  ARK_FEED_RATE: '{RATE}'\n")
    try:
        old = release_tree(tmp_path_factory.mktemp("releases") / "previous", PREVIOUS_RELEASE)
        proc = invoke_in(old, "deploy")
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        started_ms = int(time.time() * 1000)
        wait_for(lambda: fresh_decision_after(started_ms), 120, "decisions from the old fleet")
        yield {"venvs": {h: venv_of(h) for h in HOSTS},
               "heads": {h: config_head(h) for h in HOSTS}, "flowing_ms": started_ms}
    finally:
        (group_vars / "all.yml").write_text("{}\n")
        lab.down(log=lambda *_: None)


@pytest.mark.requirement("GOV_02")
@pytest.mark.requirement("SEC_03")
def test_a_failing_canary_stops_the_roll_and_goes_back(old_fleet, tmp_path):
    bad = release_tree(tmp_path / "bad", None)
    hrm = bad / "ark_runtime" / "agents" / "hrm.py"
    text = hrm.read_text()
    assert "\nclass Hrm(" in text, "HRM's class was renamed: plant the fault anew"
    hrm.write_text(text + PLANTED)
    before = {h: venv_of(h) for h in HOSTS}
    old_fleet["quiet_until_ms"] = int(time.time() * 1000)  # the baseline gap ends here

    proc = invoke_in(bad, "deploy", "--serial", "1", "--canary", AGENTS, "--gate-seconds", "20")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-4000:]
    assert f"roll: STOPPED at canary: gate failed: {AGENTS}: no fresh decision" in out, out[-4000:]
    assert "roll: batch 2/3" not in out  # nothing after the canary was deployed
    # The canary is back on the previous release; nobody else was touched.
    assert venv_of(AGENTS) == before[AGENTS] == old_fleet["venvs"][AGENTS]
    assert config_head(AGENTS) == old_fleet["heads"][AGENTS] + 2  # the bad deploy, the rollback
    for host in (REDIS, API):
        assert venv_of(host) == old_fleet["venvs"][host]
        assert config_head(host) == old_fleet["heads"][host]
    assert on(AGENTS, "grep -q planted /opt/ark/venv/lib/python3*/site-packages/"
                      "ark_runtime/agents/hrm.py").returncode == 1  # the old HRM, no fault
    # ... and decides again.
    back_ms = int(time.time() * 1000)
    wait_for(lambda: fresh_decision_after(back_ms), 90, "a decision after the rollback")
    records = [r for _f, r in iter_records(state_dir(str(INVENTORY)))]
    done = {r["action"]: r for r in records if r["result"] != "started"}
    assert done["deploy.roll"]["result"] == "failed"
    assert "stopped at canary" in done["deploy.roll"]["detail"]
    assert done["config.rollback"]["result"] == "ok"


@pytest.mark.timeout(1800)
@pytest.mark.requirement("GOV_02")
@pytest.mark.requirement("AGENT_01")
def test_roll_to_head_under_load_loses_and_duplicates_nothing(old_fleet, capsys):
    start_ms = int(time.time() * 1000)
    lines: list[str] = []
    report = rollout.roll(inventory=str(INVENTORY), serial=1, gate_bound_s=30,
                          log=lines.append)
    end_ms = int(time.time() * 1000)
    assert report.ok, "\n".join(lines[-60:])
    assert report.done == list(HOSTS)
    for host in HOSTS:
        assert venv_of(host) != old_fleet["venvs"][host], host  # HEAD's wheel, a new venv

    held = drained_against_oracle()
    ids = held.ids
    roll_gap = longest_gap_s(ids, start_ms, end_ms)
    quiet_end = old_fleet.get("quiet_until_ms", start_ms)
    quiet_gap = longest_gap_s(ids, old_fleet["flowing_ms"], quiet_end)
    with capsys.disabled():
        print(f"\nrolling upgrade: {held}; roll {(end_ms - start_ms) / 1000:.0f}s, longest "
              f"gap {roll_gap:.2f}s; baseline before any roll "
              f"({(quiet_end - old_fleet['flowing_ms']) / 1000:.0f}s): {quiet_gap:.2f}s")
        print("\n".join(line for line in lines if line.startswith(("roll", "  gate"))))
    held.assert_exactly_once()
    old_fleet["rolled"] = True  # HEAD everywhere, the feed stopped and drained


REDIS_PID = "systemctl show -p MainPID --value redis-server.service"


def redis_restarted(old_pid: str) -> str | None:
    """redis-server's new main PID once systemd has it running again after `old_pid` died."""
    pid = on(REDIS, REDIS_PID).stdout.strip()
    up = on(REDIS, "systemctl is-active redis-server.service").stdout.strip() == "active"
    return pid if up and pid not in ("", "0", old_pid) else None


@pytest.mark.timeout(1200)
@pytest.mark.requirement("AGENT_02")
@pytest.mark.requirement("AGENT_01")
def test_five_kills_of_the_deployed_redis_lose_and_duplicate_nothing(old_fleet, capsys):
    """Issue 19 §2 on the deployed Redis (HEAD's ark_redis role: AOF, appendfsync always):
    under the paced feed, redis-server is SIGKILLed five times and systemd starts it again
    with the deployed config; each time the pipeline flows again by itself, and once the feed
    stops and drains every decision of the feed was made once - none lost, none duplicated,
    none the fault-free run never made (a decision on a window with a gap would be one). The
    paced, backlog and burst loads against the same config are tests/integration/
    test_redis_crash.py's."""
    if not old_fleet.get("rolled"):
        pytest.skip("the fleet is not on HEAD: the roll's own failure says why")
    on(API, "systemctl start ark-agent@kyle.service", check=True)  # resumes at its cursor
    resumed_ms = int(time.time() * 1000)
    wait_for(lambda: fresh_decision_after(resumed_ms), 120, "decisions after Kyle resumed")
    kills_ms: list[int] = []
    for n in range(1, 6):
        pid = on(REDIS, REDIS_PID, check=True).stdout.strip()
        kills_ms.append(int(time.time() * 1000))
        on(REDIS, f"kill -KILL {shlex.quote(pid)}", check=True)
        wait_for(lambda pid=pid: redis_restarted(pid), 180,
                 f"systemd to start redis-server after kill {n}")
        wait_for(lambda: fresh_decision_after(kills_ms[-1]), 180, f"a decision after kill {n}")

    held = drained_against_oracle()
    times = sorted(int(i.split("-")[0]) for i in held.ids)
    gaps = [(min(t for t in times if t > k) - max((t for t in times if t <= k), default=k))
            / 1000 for k in kills_ms]
    with capsys.disabled():
        print(f"\nfive Redis kills under load: {held}; seconds without a decision around each "
              f"kill {', '.join(f'{g:.2f}' for g in gaps)} (median "
              f"{sorted(gaps)[2]:.2f}, max {max(gaps):.2f})")
    held.assert_exactly_once()


# Issue #20 §1: the same fleet becomes the `ha` topology (ark-lab-2 and -3 also hold replicas of
# ark-lab-1's Redis; a Sentinel on each host) with one deploy, under the same feed and oracle.
MASTER = placement.sentinel_master(REDIS)
# Run on the API host, which stays up in every drill: the first Sentinel that answers (the
# powered-off host's does not), logged in as the root tools.
WHERE = ENV + (
    'for s in $(echo "$ARK_REDIS_SENTINELS" | tr , " "); do '
    'out=$(REDISCLI_AUTH="$ARK_REDIS_PASSWORD" timeout 5 redis-cli --no-auth-warning '
    '--user admin --tls --cacert "$ARK_REDIS_TLS_DIR/ca.crt" '
    '--cert "$ARK_REDIS_TLS_DIR/host.crt" --key "$ARK_REDIS_TLS_DIR/host.key" '
    f'-h "${{s%:*}}" -p "${{s##*:}}" SENTINEL GET-MASTER-ADDR-BY-NAME {MASTER}) '
    '&& [ -n "$out" ] && { echo "$out"; break; }; done')
# This host's own Redis, as the root tools log in.
OWN_REDIS = ("set -a; . /etc/ark/env/infrastructure.env; set +a; "
             "REDISCLI_AUTH=\"$ARK_REDIS_PASSWORD\" timeout 10 redis-cli --no-auth-warning "
             "--user admin --tls --cacert /etc/redis/tls/ca.crt --cert /etc/redis/tls/redis.crt "
             "--key /etc/redis/tls/redis.key -p 6380 ")
ROLE = OWN_REDIS + "INFO replication"
# What the Sentinel asked by `redis.failover` (the first of the env file's) knows of each
# replica's priority: {ip: replica-priority}.
PRIORITIES = ENV + PY + shlex.quote(
    "import json; from ark_runtime.config import redis_settings; "
    "from ark_runtime.bus.clients import sentinel_replicas; "
    "print(json.dumps({r['ip']: r['slave-priority'] "
    "for r in sentinel_replicas(redis_settings())}))")
# Drills of each kind: 1 power-off and 2 SIGKILLs in the suite; 5 each for the figures.
POWER_OFFS = int(os.environ.get("ARK_FAILOVER_POWER_OFFS", "1"))
DRILLS = int(os.environ.get("ARK_FAILOVER_DRILLS", "2"))
INVOKE = [sys.executable, "-m", "invoke"]


def address(host: str) -> str:
    return LabHost.parse(host).address


def asked(host: str, command: str) -> str:
    """`command`'s output on `host`, '' when it gives none in time: polled in wait_for, one
    slow login (a host's logind once stalled an SSH session for minutes) is one miss."""
    try:
        return on(host, command, timeout=30).stdout
    except subprocess.TimeoutExpired:
        return ""


def primary_now() -> str | None:
    """The lab host the Sentinels name primary (asked from the API host), else None."""
    out = asked(API, WHERE).split()
    return next((h for h in HOSTS if out and out[0] == address(h)), None)


def replica_linked(host: str, primary: str) -> bool:
    info = dict(line.split(":", 1) for line in asked(host, ROLE).splitlines()
                if ":" in line)
    return (info.get("role") == "slave" and info.get("master_host") == address(primary)
            and info.get("master_link_status") == "up")


def set_settled(primary: str) -> bool:
    """`primary` is the set's primary, every other member its linked replica, and every
    Sentinel sees it so (redis.failover's own check: a Sentinel still seeing a rejoined
    replica as a rogue primary undoes the next failover)."""
    return primary_now() == primary and all(replica_linked(h, primary)
                                            for h in HOSTS if h != primary) \
        and on(API, settled_command(MASTER), timeout=60).returncode == 0


def replica_down_alert() -> bool:
    """ArkRedisReplicaDown firing in ark-lab-1's Prometheus (an exporter of the set saw a
    replica down through the Sentinels for 30 s)."""
    resp = httpx.get(f"http://{address(REDIS)}:9090/api/v1/query", timeout=10, params={
        "query": 'ALERTS{alertname="ArkRedisReplicaDown",alertstate="firing"}'})
    resp.raise_for_status()
    return bool(resp.json()["data"]["result"])


def replication_seen() -> str:
    """What each exporter reports of the set, and the flags the Sentinels give each replica."""
    figures = {h: asked(h, f"curl -s -m 5 http://{address(h)}:9101/metrics | "
                           "grep -E '^ark_redis_(replica|sentinel)'").split() for h in HOSTS}
    flags = asked(API, ENV + PY + shlex.quote(
        "import json; from ark_runtime.config import redis_settings; "
        "from ark_runtime.bus.clients import sentinel_replicas; "
        "print(json.dumps([[r['ip'], r['flags'], r.get('master-link-status')] "
        "for r in sentinel_replicas(redis_settings())]))"))
    return f"exporters {figures}; Sentinel's replicas {flags.strip()[-600:]}"


def drill_gap(ids: list[str], at_ms: int, promoted_ms: int) -> float:
    """Seconds without a decision over a drill: the longest stretch from the last decision
    before the fault to the first one made after the Sentinels named the new primary."""
    times = sorted(int(i.split("-")[0]) for i in ids)
    start = max((t for t in times if t <= at_ms), default=at_ms)
    end = min(t for t in times if t > promoted_ms)
    return longest_gap_s(ids, start, end)


@pytest.fixture(scope="module")
def ha_fleet(old_fleet):
    if not old_fleet.get("rolled"):
        pytest.skip("the fleet is not on HEAD: the roll's own failure says why")
    lab.up(hosts=3, topology="ha", log=lambda *_: None)  # the same hosts, a new inventory
    deploy_mod.deploy(inventory=str(INVENTORY), echo=False, log=lambda *_: None)  # raises
    wait_for(lambda: set_settled(REDIS), 120, "the replicas to sync and the Sentinels to agree")
    on(API, "systemctl start ark-agent@kyle.service", check=True)
    resumed_ms = int(time.time() * 1000)
    wait_for(lambda: fresh_decision_after(resumed_ms), 120, "decisions through the Sentinels")
    # The control node's audit log outlives lab.down: the drills' records are the ones after.
    return {"drills": [], "records_before": len(list(iter_records(state_dir(str(INVENTORY)))))}


def _after_failover(ha_fleet: dict, kind: str, old: str, at_ms: int) -> str:
    try:
        new = wait_for(lambda: (lambda p: p if p not in (None, old) else None)(primary_now()),
                       120, f"the Sentinels to promote a replica after the {kind}")
    except AssertionError as exc:  # say what the Sentinels and exporters still see
        raise AssertionError(f"{exc}: {replication_seen()}") from None
    promoted_ms = int(time.time() * 1000)
    wait_for(lambda: fresh_decision_after(promoted_ms), 180,
             f"a decision on the new primary after the {kind}")
    ha_fleet["drills"].append((kind, at_ms, promoted_ms, old, new))
    return new


def planned_failover(ha_fleet: dict, to: str | None = None) -> str:
    """`invoke redis.failover` (audited), settled; `to`: the replica the Sentinels should
    promote, made the preferred one first (replica-priority 1, the others the default)."""
    old, at_ms = primary_now(), int(time.time() * 1000)
    if to:
        for host in HOSTS:
            if host != old:
                on(host, OWN_REDIS + f"CONFIG SET replica-priority {1 if host == to else 100}",
                   check=True)
        # The Sentinel that fails over reads priorities from each replica's INFO (every 10 s).
        wait_for(lambda: json.loads(on(API, PRIORITIES, check=True).stdout.splitlines()[-1])
                 .get(address(to)) == 1, 60, f"the Sentinel to see {to} preferred")
    proc = subprocess.run(INVOKE + ["redis.failover", "--inventory", str(INVENTORY)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"{address(old)}:6380 -> " in proc.stdout, proc.stdout
    new = _after_failover(ha_fleet, "redis.failover", old, at_ms)
    assert to in (None, new), f"the Sentinels promoted {new}, not {to}"
    wait_for(lambda: set_settled(new), 180, f"{old} to follow {new} as a replica")
    return new


@pytest.mark.timeout(3000)
@pytest.mark.requirement("AGENT_02")
@pytest.mark.requirement("INFRA_01")
def test_failover_drills_lose_and_duplicate_nothing(ha_fleet, capsys):
    """Issue #20 §1's drill, under the paced feed: (1) ark-lab-1 - the primary's host, which
    runs no agent - is powered off (its init SIGKILLed: every process of it at once); (2) then,
    DRILLS times, the primary's redis-server is SIGKILLed and kept down (a Redis that cannot
    come back: a restart within the Sentinels' 3 s would need no failover, as the five-kill
    test shows; the first time it stays down until ArkRedisReplicaDown fires, and the alert
    resolves once it is back). Each time the Sentinels promote a replica, the agents follow
    by themselves, and the old primary, brought back, rejoins as a replica. Once the feed
    stops and drains, every decision of the feed was made once: none lost, none duplicated,
    none unexpected. (3) Last, `invoke redis.failover` moves the primary on purpose, audited
    (as it does before each further power-off, to make ark-lab-1 primary again).
    ARK_FAILOVER_POWER_OFFS and ARK_FAILOVER_DRILLS (default 1 and 2) give the figures' 5
    and 5."""
    paths = LabPaths.default()
    # (1) Power off the primary's host (ark-lab-1, which runs no agent), then boot it again.
    for n in range(1, POWER_OFFS + 1):
        if primary_now() != REDIS:
            planned_failover(ha_fleet, to=REDIS)  # the lab's Redis-only host primary again
        at_ms = int(time.time() * 1000)
        hostmod.power_off(hostmod.layout(paths, LabHost.parse(REDIS)))
        new = _after_failover(ha_fleet, f"power-off {n}", REDIS, at_ms)
        lab.up(hosts=3, topology="ha", log=lambda *_: None)  # boots ark-lab-1 again
        wait_for(lambda new=new: set_settled(new), 180, f"{REDIS} to rejoin as {new}'s replica")
    # (2) SIGKILL the primary's redis-server and keep it down until the replica took over.
    for n in range(1, DRILLS + 1):
        old = primary_now()
        at_ms = int(time.time() * 1000)
        on(old, "systemctl kill --signal=KILL redis-server.service; "
                "systemctl stop redis-server.service", check=True)
        new = _after_failover(ha_fleet, f"SIGKILL {n}", old, at_ms)
        if n == 1:  # the old primary, now a replica down: the alert fires, then resolves
            wait_for(lambda: replica_down_alert(), 240, "ArkRedisReplicaDown to fire")
        on(old, "systemctl start redis-server.service", check=True)
        wait_for(lambda new=new: set_settled(new), 180, f"{old} to rejoin as {new}'s replica")
        if n == 1:
            try:
                wait_for(lambda: not replica_down_alert(), 420, "ArkRedisReplicaDown to resolve")
            except AssertionError as exc:  # say what the Sentinels and exporters still see
                raise AssertionError(f"{exc}: {replication_seen()}") from None
    # (3) A planned switch-over, as an operator does before patching the primary's host.
    planned_failover(ha_fleet)
    records = [r for _f, r in iter_records(state_dir(str(INVENTORY)))]
    records = records[ha_fleet["records_before"]:]
    done = [r for r in records if r["action"] == "redis.failover" and r["result"] != "started"]
    assert done and all(r["result"] == "ok" for r in done), done

    held = drained_against_oracle()
    gaps = [(kind, drill_gap(held.ids, at, promoted), old, new)
            for kind, at, promoted, old, new in ha_fleet["drills"]]
    with capsys.disabled():
        print(f"\nfailover drills: {held}")
        for kind, gap, old, new in gaps:
            print(f"  {kind}: {old} -> {new}, {gap:.2f} s without a decision")
        for name in ("power-off", "SIGKILL", "redis.failover"):
            seen = sorted(g for kind, g, *_ in gaps if kind.startswith(name))
            print(f"  {name}: {len(seen)} drill(s), seconds without a decision: median "
                  f"{statistics.median(seen):.2f}, max {max(seen):.2f}")
    held.assert_exactly_once()
    ha_fleet["drilled"] = True


@pytest.mark.requirement("INFRA_01")
def test_verify_is_green_after_the_drills(ha_fleet):
    """`invoke verify` on the drilled fleet, its Redis, replication and placement checks:
    every replica linked to the primary the Sentinels name (the old primaries among them),
    the Sentinels seeing the set and each other, the agents connected to the new primary."""
    if not ha_fleet.get("drilled"):
        pytest.skip("the drills did not finish: their own failure says why")
    on(API, "systemctl start ark-agent@kyle.service", check=True)  # stopped by the drain
    lines: list[str] = []
    # The checks a failover can break (the whole suite ran on this fleet before the roll).
    rc = verify(inventory=str(INVENTORY), keyword="replication or redis or placement",
                log=lines.append, echo=lines.append)
    assert rc == 0, "\n".join(lines[-80:])
