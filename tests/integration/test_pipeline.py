"""TEST_01 / AGENT_01 / AGENT_03: Kyle -> Joey -> Kenny -> HRM as real processes on real Redis."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, Lab, wait_for
from helpers import decisions, log_lines, pending, store_decisions, store_ledger

from ark_runtime.hrm import Exposure, RuleEngine, load_ruleset
from ark_runtime.market import SyntheticAdapter
from ark_runtime.patterns import PatternDetector
from ark_runtime.planner import AccountConfig, PlanError, plan_trade

SYMBOLS = ["AAPL", "MSFT", "BTC-USD"]


def expected_outcomes(seed: int, bars: int) -> dict[tuple[str, str, str], bool]:
    """The oracle: the same domain code run in-process. (symbol, pattern, ts) -> approved.
    No executor runs here, so nothing closes: each approval's size stays open exposure."""
    detector, account = PatternDetector(), AccountConfig(account_size=100000)
    engine = RuleEngine(load_ruleset())
    exposure: dict[str, float] = {}
    out = {}
    for bar in SyntheticAdapter(SYMBOLS, seed=seed, bars=bars):
        for pattern in detector.update(bar):
            try:
                plan = plan_trade(pattern, account)
            except PlanError:
                continue
            key = (plan.symbol, plan.pattern, plan.pattern_ts.isoformat())
            decision = engine.evaluate(plan.rule_input(), exposure=Exposure(
                exposure.get(plan.symbol, 0.0), sum(exposure.values())))
            if decision.approved:
                exposure[plan.symbol] = exposure.get(plan.symbol, 0.0) + plan.position_size
            out[key] = decision.approved
    return out


def outcomes(r) -> dict[tuple[str, str, str], bool]:
    out = {}
    for env in decisions(r):
        plan = env.payload["plan"]
        key = (plan["symbol"], plan["pattern"], plan["pattern_ts"].replace("Z", "+00:00"))
        assert key not in out, f"decided twice: {key}"
        out[key] = env.payload["decision"]["approved"]
    return out


def start_pipeline(lab: Lab, **kyle_env: str) -> dict:
    procs = {name: lab.start(name) for name in ("hrm", "kenny", "joey")}
    procs["kyle"] = lab.start("kyle", ARK_FEED="synthetic",
                              ARK_FEED_SYMBOLS=",".join(SYMBOLS), **kyle_env)
    return procs


@pytest.mark.requirement("TEST_01")
@pytest.mark.requirement("AGENT_01")
@pytest.mark.requirement("AGENT_03")
def test_approval_and_rejection_end_to_end_with_correlation(lab: Lab, r) -> None:
    expected = expected_outcomes(seed=0, bars=200)
    assert True in expected.values() and False in expected.values()
    procs = start_pipeline(lab, ARK_FEED_SEED="0", ARK_FEED_BARS="200")
    wait_for(lambda: len(decisions(r)) >= len(expected), 30, what="all decisions")
    assert outcomes(r) == expected

    env = lab.env()
    bar_ids = {ln["emitted_id"] for ln in log_lines(env["ARK_LOG_DIR"], "kyle")
               if ln.get("event") == "emitted"}
    assert len(bar_ids) == 600
    for d in decisions(r):
        # The trace id is the id of the bar that started the flow, carried through 3 hops.
        assert d.correlation_id in bar_ids
        assert d.causation_id is not None
    stored = store_decisions(env["ARK_STATE_DIR"])
    assert sorted(x["correlation_id"] for x in stored) == \
        sorted(d.correlation_id for d in decisions(r))
    approved = [d for d in decisions(r) if d.payload["decision"]["approved"]]
    rejected = [d for d in decisions(r) if not d.payload["decision"]["approved"]]
    assert len(store_ledger(env["ARK_STATE_DIR"])) == len(approved)
    assert all(d.payload["decision"]["violations"] for d in rejected)

    # Every line every agent logged is JSON carrying the correlation_id key; each agent told
    # "systemd" it was ready and kept the watchdog fed.
    for name, agent in procs.items():
        assert agent.notify.messages[0] == "READY=1"
        assert agent.notify.seen("WATCHDOG=1")
        lines = log_lines(env["ARK_LOG_DIR"], name)
        assert lines and all("correlation_id" in ln for ln in lines)

    for verdict, d in (("approved", approved[0]), ("rejected", rejected[0])):
        out = subprocess.run(
            [sys.executable, "-m", "ark_runtime.cli", "trace", d.correlation_id],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, out.stderr
        text = out.stdout
        for hop in ("/kyle", "/joey", "/kenny", "/hrm", "store/decisions"):
            assert hop in text, f"{hop} missing from trace:\n{text}"
        assert verdict in text
        order = [text.index(x) for x in ("/kyle ", "/joey ", "/kenny ", "/hrm ")]
        assert order == sorted(order), f"hops out of time order:\n{text}"
    for name in ("joey", "kenny", "hrm"):
        assert pending(r, name) == 0
