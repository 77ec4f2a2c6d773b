"""Issue #12: the bus's Lua commit is Redis Cluster safe as far as one agent's keys go.

* Every key a script touches reaches it in KEYS: checked in the script text (each
  redis.call's key argument is KEYS[...] or a local taken from KEYS) and in a real commit's
  arguments (every command's key is an index into KEYS, no key name hides in the arguments,
  multi-key commands are refused).
* The agent's own keys (inbox, failures hash, done marks, Joey's state) share the inbox's
  slot (redis-py's key_slot, the CRC16 Redis Cluster uses). The downstream streams are in
  other slots in this default layout (one Redis).
* The cluster layout (ARK_BUS_KEY_TAG=ark) puts every key of every agent's commit, the
  downstream stream included, in the one slot of `{ark}` (checked in a fresh interpreter:
  the layout is fixed at import).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from redis.crc import key_slot

from ark_runtime.agents.joey import ACC_KEY, WINDOW_KEY, Joey
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.streams import (
    ERRORS_STREAM,
    BusSettings,
    Delivery,
    Inbox,
    done_key,
    failures_key,
    inbox,
)
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector

REPO = Path(__file__).resolve().parents[2]
LUA_BLOCK = re.compile(r'"""(.*?)"""', re.S)
CALL = re.compile(r"redis\.call\(\s*([^,]+),\s*([^,)]+)")
LOCAL_FROM_KEYS = re.compile(r"local\s+(\w+)\s*=\s*KEYS\[")


def lua_scripts() -> list[tuple[str, str]]:
    found = []
    for path in sorted((REPO / "ark_runtime").rglob("*.py")) + sorted(
            (REPO / "ark_ops").rglob("*.py")):
        for block in LUA_BLOCK.findall(path.read_text()):
            if "redis.call" in block:
                found.append((str(path.relative_to(REPO)), block))
    return found


def test_every_script_takes_its_keys_from_KEYS() -> None:
    scripts = lua_scripts()
    assert scripts, "no Lua script found: the scan is broken"
    for where, script in scripts:
        from_keys = set(LOCAL_FROM_KEYS.findall(script))
        for command, key in CALL.findall(script):
            key = key.strip()
            assert key.startswith("KEYS[") or key in from_keys, \
                f"{where}: redis.call({command}, {key}) does not take its key from KEYS"


class RecordingClient:
    """Just enough of redis.Redis for Inbox.commit_many: records the EVALSHA call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def register_script(self, _source: str):
        return type("Script", (), {"sha": "0" * 40})()

    def evalsha(self, _sha: str, numkeys: int, *rest):
        keys, args = list(rest[:numkeys]), list(rest[numkeys:])
        self.calls.append((keys, args))
        return [1] * len(json.loads(args[2]))


def joey_batch() -> tuple[RecordingClient, list[str], list]:
    """A real Joey batch (bars through the detector, its state writes) committed through a
    recording client: the keys and commands the script would get."""
    client = RecordingClient()
    box = Inbox(client, "joey", "joey@test", BusSettings())
    joey = Joey.__new__(Joey)
    joey.detector, joey.window_size = PatternDetector(), 60
    commits = []
    for bar in SyntheticAdapter(["AAPL", "MSFT"], seed=3, bars=60):
        env = Envelope.new("market.bar", bar, from_agent="kyle", to_agent="joey")
        delivery = Delivery(inbox("joey"), "1-0", env.to_fields(), 1, env)
        outputs = joey.handle(env)
        outputs.append((ERRORS_STREAM, Envelope.new(
            "error.raised", {"agent": "joey", "severity": "info", "error": "x",
                             "message": "y"}, from_agent="joey", to_agent="bus")))
        commits.append((delivery, outputs, joey.state_writes(env)))
    box.commit_many(commits)
    keys, args = client.calls[-1]
    return client, keys, json.loads(args[2])


def test_a_commit_passes_every_key_in_KEYS_and_none_in_the_arguments() -> None:
    _client, keys, messages = joey_batch()
    assert len(keys) == len(set(keys))
    for done_index, _entry, commands in messages:
        assert keys[done_index - 1].startswith("ark:done:")
        for name, key_index, *rest in commands:
            assert 1 <= key_index <= len(keys), name
            assert not set(map(str, rest)) & set(keys), f"{name} carries a key as argument"
    touched = {keys[c[1] - 1] for _, _, cmds in messages for c in cmds}
    assert {f"{WINDOW_KEY}AAPL", ACC_KEY, inbox("kenny"), ERRORS_STREAM} <= touched


def test_the_agents_own_keys_share_the_inbox_slot() -> None:
    _client, keys, _messages = joey_batch()
    own = [k for k in keys if k not in (inbox("kenny"), ERRORS_STREAM)]
    assert {key_slot(k.encode()) for k in own} == {key_slot(inbox("joey").encode())}
    assert {ACC_KEY, failures_key("joey")} <= set(own)
    for agent in ("joey", "kenny", "hrm"):
        mark = done_key(agent, "6f0b3b1e-59b5-4f4e-9a57-2b1f0a6c0a11")
        assert key_slot(mark.encode()) == key_slot(failures_key(agent).encode()) == \
            key_slot(inbox(agent).encode())
    # Not claimed yet: the emit into the next agent's stream is another slot.
    assert key_slot(inbox("kenny").encode()) != key_slot(inbox("joey").encode())


def test_a_multi_key_state_command_is_refused() -> None:
    client = RecordingClient()
    box = Inbox(client, "joey", "joey@test", BusSettings())
    bar = next(iter(SyntheticAdapter(["AAPL"], bars=1)))
    env = Envelope.new("market.bar", bar, from_agent="kyle", to_agent="joey")
    delivery = Delivery(inbox("joey"), "1-0", env.to_fields(), 1, env)
    with pytest.raises(ValueError, match="RPOPLPUSH is not a single-key command"):
        box.commit_many([(delivery, [], [["RPOPLPUSH", "a", "b"]])])
    assert not client.calls


# Run under ARK_BUS_KEY_TAG=ark in a fresh interpreter (the layout is fixed at import): real
# Joey (shards 0 and 1) and Kenny handlers, and HRM's decision output, each batch committed
# through the recording client; prints every EVAL's KEYS.
_CLUSTER_PROBE = """
import json, logging, sys
sys.path.insert(0, sys.argv[1])
from test_cluster_keys import RecordingClient
from ark_runtime.agents.joey import Joey
from ark_runtime.agents.kenny import Kenny
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.streams import (DECISIONS_STREAM, ERRORS_STREAM, BusSettings, Delivery,
                                     Inbox, inbox, kyle_cursor_key)
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector
from ark_runtime.planner import AccountConfig

calls = []
def commit(agent, instance, items):
    client = RecordingClient()
    box = Inbox(client, agent, agent + "@t", BusSettings(), instance)
    box.commit_many([(Delivery(box.stream, "1-0", e.to_fields(), 1, e), out, state)
                     for e, out, state in items])
    calls.append({"agent": instance, "keys": client.calls[-1][0]})

patterns = []
for shard in (0, 1):
    joey = Joey(env={}, shard=shard)
    joey.detector, joey.window_size = PatternDetector(), 60
    items = []
    for bar in SyntheticAdapter(["AAPL", "MSFT", "NVDA"], seed=3, bars=80):
        env = Envelope.new("market.bar", bar, from_agent="kyle", to_agent="joey")
        out = joey.handle(env)
        patterns += [o for _, o in out]
        out.append((ERRORS_STREAM, Envelope.new("error.raised", {"agent": "joey",
            "severity": "info", "error": "x", "message": "y"}, from_agent="joey",
            to_agent="bus")))
        items.append((env, out, joey.state_writes(env)))
    commit("joey", joey.instance, items)
kenny = Kenny.__new__(Kenny)
kenny.account, kenny.log = AccountConfig(account_size=100000), logging.getLogger("k")
items = [(p, kenny.handle(p), []) for p in patterns]
commit("kenny", "kenny", items)
plans = [o for _, out, _ in items for _, o in out]
commit("hrm", "hrm", [(p, [(DECISIONS_STREAM, p)], []) for p in plans])
print(json.dumps({"calls": calls, "exec": [inbox("joey"), inbox("joey-1"),
                                           kyle_cursor_key("f")]}))
"""


def test_cluster_layout_puts_every_commit_in_one_slot() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _CLUSTER_PROBE, str(Path(__file__).parent)], cwd=REPO,
        env={"ARK_BUS_KEY_TAG": "ark", "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, check=True).stdout
    probe = json.loads(out)
    slot = key_slot(b"{ark}")
    assert [c["agent"] for c in probe["calls"]] == ["joey", "joey-1", "kenny", "hrm"]
    for call in probe["calls"]:
        keys = call["keys"]
        assert len(keys) > 3, call  # inbox, failures, marks, the downstream stream, ...
        assert {key_slot(k.encode()) for k in keys} == {slot}, call["agent"]
        assert all("{ark}" in k for k in keys)
    # The EVALs reach the next agent's stream: the cross-slot emit the layout exists for.
    assert any(k.endswith(":stream:kenny") for k in probe["calls"][0]["keys"])
    assert any(k.endswith(":stream:decisions") for k in probe["calls"][3]["keys"])
    # Kyle's EXEC (bars into the shards' inboxes + its cursor) is one slot too.
    assert {key_slot(k.encode()) for k in probe["exec"]} == {slot}


def test_default_layout_keeps_the_key_names_of_one_redis() -> None:
    # Unset tag: nothing renamed (a running deployment keeps its streams and marks).
    assert inbox("joey") == "ark:stream:joey"
    assert done_key("kenny", "m") == "ark:done:{ark:stream:kenny}:m"
    assert failures_key("joey-1") == "ark:failures:{ark:stream:joey-1}"
