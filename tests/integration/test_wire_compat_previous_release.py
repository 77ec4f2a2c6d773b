"""AGENT_01, rolling upgrades: the previous release's own code reads every message this
release writes of a type it knows, and this release reads the previous release's.

During a roll the agents of both releases share one bus (docs/AGENT_PROTOCOL.md, "Schema
versions and upgrades"). A payload field added without leaving it out of the older form made
the previous release's HRM dead-letter every plan of a new Kenny: the mixed fleet made no
decision and the roll stopped. The previous release runs here from `git archive` of its
commit, in a subprocess with its own `ark_runtime` on the path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.registry import HrmVerdict
from ark_runtime.hrm import RuleEngine, load_ruleset
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector
from ark_runtime.planner import AccountConfig, PlanError, plan_trade
from tests.support.releases import PREVIOUS_RELEASE, extract

pytestmark = pytest.mark.requirement("AGENT_01")

# Reads each line (a stream entry's fields, JSON) with the code on its path; prints, per line,
# "ok" or the refusal. Run with the previous release's tree first on sys.path.
READER = """
import json, sys
from ark_runtime.bus.envelope import Envelope
for line in sys.stdin:
    try:
        Envelope.from_fields(json.loads(line)); print("ok")
    except Exception as exc:
        print(type(exc).__name__ + ": " + str(exc).replace(chr(10), " ")[:300])
"""


def flows(n_plans: int) -> list[Envelope]:
    """What the pipeline writes, built by this release's own domain code and Envelope.new:
    bars, patterns, plans and HRM's verdicts (approved and rejected)."""
    detector, account = PatternDetector(), AccountConfig(account_size=100000)
    engine, out, plans = RuleEngine(load_ruleset()), [], 0
    for bar in SyntheticAdapter(["AAPL", "MSFT", "BTC-USD"], seed=7, bars=4000):
        out.append(Envelope.new("market.bar", bar, from_agent="kyle", to_agent="joey"))
        for pattern in detector.update(bar):
            out.append(Envelope.new("pattern.detected", pattern, from_agent="joey",
                                    to_agent="kenny"))
            try:
                plan = plan_trade(pattern, account)
            except PlanError:
                continue
            out.append(Envelope.new("trade.plan", plan, from_agent="kenny", to_agent="hrm"))
            verdict = HrmVerdict(symbol=plan.symbol, plan=plan,
                                 decision=engine.evaluate(plan.rule_input()))
            out.append(Envelope.new("hrm.decision", verdict, from_agent="hrm", to_agent="bus"))
            plans += 1
            if plans == n_plans:
                return out
    raise AssertionError("the synthetic feed produced too few plans")


@pytest.fixture(scope="module")
def previous(tmp_path_factory) -> Path:
    return extract(PREVIOUS_RELEASE, tmp_path_factory.mktemp("previous"), "ark_runtime")


def read_with(tree: Path, entries: list[dict[str, str]]) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", READER], cwd=tree, capture_output=True,
                          text=True, input="".join(json.dumps(e) + "\n" for e in entries),
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.splitlines()


def test_the_previous_release_reads_every_message_this_release_writes(previous) -> None:
    messages = flows(40)
    assert {m.type for m in messages} == {"market.bar", "pattern.detected", "trade.plan",
                                          "hrm.decision"}
    results = read_with(previous, [m.to_fields() for m in messages])
    refused = [(m.type, r) for m, r in zip(messages, results, strict=True) if r != "ok"]
    assert not refused, refused[:3]


def test_this_release_reads_what_the_previous_release_wrote(previous) -> None:
    writer = """
import json
from ark_runtime.bus.envelope import Envelope
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector
from ark_runtime.planner import AccountConfig, PlanError, plan_trade
d, a, n = PatternDetector(), AccountConfig(account_size=100000), 0
for bar in SyntheticAdapter(["AAPL", "MSFT"], seed=3, bars=3000):
    for p in d.update(bar):
        try:
            plan = plan_trade(p, a)
        except PlanError:
            continue
        print(json.dumps(Envelope.new("trade.plan", plan, from_agent="kenny",
                                      to_agent="hrm").to_fields()))
        n += 1
    if n >= 20:
        break
"""
    proc = subprocess.run([sys.executable, "-c", writer], cwd=previous, capture_output=True,
                          text=True, env={"PYTHONPATH": str(previous), "PATH": "/usr/bin:/bin"},
                          timeout=300, check=True)
    entries = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(entries) == 20
    for fields in entries:
        plan = Envelope.from_fields(fields).body()
        assert plan.hold_bars == 20  # the field's default: what the executor's time limit uses
