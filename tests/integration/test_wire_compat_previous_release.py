"""AGENT_01, rolling upgrades: the previous releases' own code reads every message this
release writes of a type it knows, and this release reads the previous release's. A type a
previous release does not register is one it would dead-letter: the writer must not send it
to that release's reader (bus/advert.py gates `position.marked` on HRM's advertisement).

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

from ark_runtime.agents.executor import Executor
from ark_runtime.bus.advert import GATED, ReaderGate, advertisement
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.registry import HrmVerdict
from ark_runtime.execution.paper import ExecConfig
from ark_runtime.hrm import RuleEngine, load_ruleset
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector
from ark_runtime.planner import AccountConfig, PlanError, plan_trade
from tests.support.releases import LAST_LANDED_RELEASE, PREVIOUS_RELEASE, RELEASES, extract

pytestmark = pytest.mark.requirement("AGENT_01")

# Reads each line (a stream entry's fields, JSON) with the code on its path; prints, per line,
# "ok" or the refusal. Run with the previous release's tree first on sys.path.
# The first line printed is the types that code registers (JSON).
READER = """
import json, sys
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.registry import REGISTRY
print(json.dumps(sorted(REGISTRY)))
for line in sys.stdin:
    try:
        Envelope.from_fields(json.loads(line)); print("ok")
    except Exception as exc:
        print(type(exc).__name__ + ": " + str(exc).replace(chr(10), " ")[:300])
"""


def paper_executor(fetch) -> Executor:
    """This release's executor (its handler, not its Redis loop), its mark gate reading HRM's
    advertisement through `fetch`."""
    executor = Executor(env={})
    executor.exec_config = ExecConfig(slippage_bps=5, fee_bps=1)
    executor.books, executor._writes, executor.books_key = {}, [], "books"
    executor.filled = executor.closed = 0
    executor.mark_gate = ReaderGate(fetch)
    return executor


def flows(n_plans: int, hrm_advertisement=advertisement) -> list[Envelope]:
    """What the pipeline writes, built by this release's own domain code and Envelope.new:
    bars, patterns, plans, HRM's verdicts (approved and rejected) and approvals, and the
    executor's fills, closes and marks (its marks only while `hrm_advertisement` lists them)."""
    detector, account = PatternDetector(), AccountConfig(account_size=100000)
    engine, out, plans = RuleEngine(load_ruleset()), [], 0
    executor = paper_executor(hrm_advertisement)
    for bar in SyntheticAdapter(["AAPL", "MSFT", "BTC-USD"], seed=7, bars=4000):
        out.append(Envelope.new("market.bar", bar, from_agent="kyle", to_agent="joey"))
        out += [env for _stream, env in executor.handle(
            Envelope.new("market.bar", bar, from_agent="kyle", to_agent="executor"))]
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
            if verdict.decision.approved:
                approved = Envelope.new("trade.approved", verdict, from_agent="hrm",
                                        to_agent="executor")
                out.append(approved)
                out += [env for _stream, env in executor.handle(approved)]
            plans += 1
            if plans == n_plans:
                return out
    raise AssertionError("the synthetic feed produced too few plans")


# What each release's code does not register (its reader would dead-letter it), and why this
# release never writes it to that release's reader.
NOT_REGISTERED = {
    # No executor yet: this release's HRM alone writes approvals, to the executor (no agent
    # of that release reads them); fills and closes follow only from an approval. Marks are
    # gated (below).
    PREVIOUS_RELEASE: {"trade.approved", "position.filled", "position.closed",
                       "position.marked"},
    # The executor is there; its marks are not: gated on HRM's advertisement.
    LAST_LANDED_RELEASE: {"position.marked"},
}


@pytest.fixture(scope="module", params=RELEASES, ids=lambda commit: commit[:7])
def release(request, tmp_path_factory) -> tuple[str, Path]:
    commit = request.param
    return commit, extract(commit, tmp_path_factory.mktemp(commit[:7]), "ark_runtime")


@pytest.fixture(scope="module")
def previous(release) -> Path:
    return release[1]


def read_with(tree: Path, entries: list[dict[str, str]]) -> tuple[set[str], list[str]]:
    """The types the code in `tree` registers, and its verdict on each entry."""
    proc = subprocess.run([sys.executable, "-c", READER], cwd=tree, capture_output=True,
                          text=True, input="".join(json.dumps(e) + "\n" for e in entries),
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    registered, *results = proc.stdout.splitlines()
    return set(json.loads(registered)), results


def test_the_previous_release_reads_every_message_this_release_writes(release) -> None:
    commit, previous = release
    messages = flows(40)
    written = {m.type for m in messages}
    assert written == {"market.bar", "pattern.detected", "trade.plan", "hrm.decision",
                       "trade.approved", "position.filled", "position.closed",
                       "position.marked"}
    registered, results = read_with(previous, [m.to_fields() for m in messages])
    assert written - registered == NOT_REGISTERED[commit]
    refused = [(m.type, r) for m, r in zip(messages, results, strict=True)
               if r != "ok" and m.type in registered]
    assert not refused, refused[:3]


def test_types_the_previous_release_does_not_register_are_gated_on_its_advertisement(
        release) -> None:
    """A type the previous release would dead-letter reaches its HRM only through the gate:
    that release sets no advertisement, so with its HRM this release's executor sends fills
    and closes but no mark."""
    commit, previous = release
    assert "ark:reads:" not in (previous / "ark_runtime/bus/keys.py").read_text()
    gated = NOT_REGISTERED[commit] - {"trade.approved", "position.filled", "position.closed"}
    assert gated == {"position.marked"} and gated <= GATED
    messages = flows(40, hrm_advertisement=lambda agent: None)
    written = {m.type for m in messages}
    assert {"position.filled", "position.closed"} <= written
    assert not written & GATED


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
