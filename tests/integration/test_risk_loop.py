"""AGENT_04: the loop from decision to result, on real processes and a real Redis.

HRM and the executor run as `ark agent` processes. The test plays Kenny (trade.plan into
HRM's inbox) and Kyle (market.bar into the executor's inbox, as Kyle adds each bar there): a
scripted losing path where every approved long is stopped out on the bar after its signal.
The daily-loss breaker must trip on exactly the close that takes the session's loss to the
limit, the next plan must be rejected with the breaker named, and a kill -9 of the executor
and of HRM in the middle of the path must change nothing in the final P&L or the trip point.
"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import yaml
from conftest import Lab, wait_for

from ark_runtime.bus.envelope import Envelope, derive_id
from ark_runtime.bus.keys import ERRORS_STREAM, POSITIONS_STREAM, inbox, risk_state_key
from ark_runtime.execution.paper import ExecConfig, Order, PositionClosed, SymbolBook
from ark_runtime.hrm.ruleset import DEFAULT_RULESET
from ark_runtime.market import Bar
from ark_runtime.planner import TradePlan

pytestmark = pytest.mark.requirement("AGENT_04")

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
LIMIT = 0.012  # three stop-outs of 0.1 x 5% (plus fees) reach it; two do not
TRADES = 5  # the 4th and 5th plans come after the trip
EXEC_ENV = {"ARK_EXEC_SLIPPAGE_BPS": "0", "ARK_EXEC_FEE_BPS": "1"}


def ruleset(tmp_path: Path) -> Path:
    data = yaml.safe_load(DEFAULT_RULESET.read_text())
    data["circuit_breakers"].update(daily_loss_limit=LIMIT, loss_streak_limit=50,
                                    consecutive_losses=50)
    path = tmp_path / "ruleset.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def plan(i: int) -> TradePlan:
    return TradePlan(symbol="AAPL", direction="long", entry=100, stop_loss=95, target=112.5,
                     position_size=0.1, quantity=100, risk_reward=2.5, max_loss=0.005, atr=2.5,
                     atr_pct=0.025, price=100, avg_volume=1_000_000, confidence=0.8,
                     pattern="breakout", pattern_ts=T0 + timedelta(minutes=2 * i))


def bars(i: int) -> list[Bar]:
    """Trade i's signal bar (quiet) and the bar after it (opens at 100, trades down to 94)."""
    ts = T0 + timedelta(minutes=2 * i)
    return [Bar(symbol="AAPL", ts=ts, open=100, high=100.5, low=99.5, close=100, volume=1e6),
            Bar(symbol="AAPL", ts=ts + timedelta(minutes=1), open=100, high=100.2, low=94,
                close=95, volume=1e6)]


def send_plan(r: redis.Redis, i: int) -> Envelope:
    env = Envelope.new("trade.plan", plan(i), from_agent="kenny", to_agent="hrm",
                       message_id=derive_id("risk-loop-plan", str(i)))
    r.xadd(inbox("hrm"), env.to_fields())
    return env


def send_bars(r: redis.Redis, i: int) -> None:
    for k, bar in enumerate(bars(i)):
        env = Envelope.new("market.bar", bar, from_agent="kyle", to_agent="executor",
                           message_id=derive_id("risk-loop-bar", f"{i}:{k}"))
        r.xadd(inbox("executor"), env.to_fields())


def risk(r: redis.Redis) -> dict:
    raw = r.get(risk_state_key())
    return json.loads(raw) if raw else {}


def decision_of(r: redis.Redis, correlation_id: str) -> dict | None:
    for _id, fields in r.xrange("ark:stream:decisions"):
        if fields.get("correlation_id") == correlation_id:
            return json.loads(fields["envelope"])["payload"]["decision"]
    return None


def expected_pnls() -> list[float]:
    """The same path through the pure logic: what the processes must agree with."""
    cfg = ExecConfig(slippage_bps=0, fee_bps=1)
    book, pnls = SymbolBook(symbol="AAPL"), []
    for i in range(3):
        order = Order(correlation_id=f"c{i}", symbol="AAPL", direction="long", stop_loss=95,
                      target=112.5, position_size=0.1, quantity=100, hold_bars=10,
                      signal_ts=T0 + timedelta(minutes=2 * i))
        book, _ = book.on_order(order, cfg)
        for bar in bars(i):
            book, events = book.on_bar(bar, cfg)
            pnls += [e.pnl for e in events if isinstance(e, PositionClosed)]
    return pnls


def run_path(lab: Lab, r: redis.Redis, rules: Path, chaos: bool) -> tuple[dict, list[dict]]:
    hrm = lab.start("hrm", ARK_HRM_RULESET=str(rules))
    executor = lab.start("executor", ARK_HRM_RULESET=str(rules), **EXEC_ENV)
    decisions = []
    for i in range(TRADES):
        env = send_plan(r, i)
        decision = wait_for(lambda env=env: decision_of(r, env.correlation_id), 30,
                            what=f"HRM's verdict on plan {i}")
        decisions.append(decision)
        if chaos and i == 1:  # kill -9 the executor with trade 1's bars in its inbox
            send_bars(r, i)
            executor.proc.send_signal(signal.SIGKILL)
            executor.proc.wait(10)
            executor = lab.start("executor", ARK_HRM_RULESET=str(rules), **EXEC_ENV)
        else:
            send_bars(r, i)
        if decision["approved"]:
            wait_for(lambda i=i: risk(r).get("positions_closed", 0) >= i + 1
                     and risk(r).get("positions_open") == 0, 30,
                     what=f"HRM to count trade {i}'s close")
        if chaos and i == 2:  # kill -9 HRM right after the trip, restart it
            hrm.proc.send_signal(signal.SIGKILL)
            hrm.proc.wait(10)
            hrm = lab.start("hrm", ARK_HRM_RULESET=str(rules))
    assert lab.stop(executor) == 0 and lab.stop(hrm) == 0
    return risk(r), decisions


@pytest.mark.parametrize("chaos", [False, True], ids=["clean", "kill-9-executor-and-hrm"])
def test_a_losing_path_trips_the_daily_loss_breaker_at_its_threshold(
        lab: Lab, r: redis.Redis, tmp_path: Path, chaos: bool) -> None:
    state, decisions = run_path(lab, r, ruleset(tmp_path), chaos)
    pnls = expected_pnls()
    assert sum(pnls[:2]) > -LIMIT >= sum(pnls)  # the script: the third stop-out trips it
    # Three approved and stopped out; the trip is on the third close, not one trade later.
    assert [d["approved"] for d in decisions] == [True, True, True, False, False]
    for rejected in decisions[3:]:
        rule_ids = [v["rule_id"] for v in rejected["violations"]]
        assert rule_ids == ["BRK-DAILY-LOSS"]
        assert "breaker daily_loss tripped" in rejected["violations"][0]["message"]
    assert state["positions_closed"] == 3 and state["positions_open"] == 0
    assert state["realised_pnl"] == pytest.approx(sum(pnls), abs=1e-12)
    assert state["open_pnl"] == 0  # every fill closed: nothing left marked
    assert state["breakers"]["daily_loss"]["tripped"] is True
    assert state["breakers"]["daily_loss"]["value"] == pytest.approx(-sum(pnls), abs=1e-12)
    # Exactly one trip report, at the ruleset's severity; exactly 3 fills and 3 closes.
    trips = [json.loads(f["envelope"])["payload"] for _i, f in r.xrange(ERRORS_STREAM)
             if f.get("type") == "error.raised"]
    trips = [t for t in trips if t["error"].startswith("breaker_tripped")]
    assert [(t["error"], t["severity"]) for t in trips] == \
        [("breaker_tripped:daily_loss", "error")]
    kinds = [f["type"] for _i, f in r.xrange(POSITIONS_STREAM)]
    assert kinds.count("position.filled") == 3 and kinds.count("position.closed") == 3


def test_a_critical_trip_pauses_upstream_and_an_audited_reset_clears_it(
        lab: Lab, r: redis.Redis, tmp_path: Path) -> None:
    """A ruleset that makes daily_loss critical: the trip also pauses Kyle, Joey and Kenny
    (AGENT_02); `ark hrm breaker reset` (audited) clears the breaker and HRM's pause, and the
    next plan is approved again."""
    import subprocess
    import sys

    from ark_runtime.bus.errors import PAUSE_KEY
    from ark_runtime.host.audit.chain import iter_records, verify_dir
    from ark_runtime.host.layout import audit_dir

    rules = ruleset(tmp_path)
    data = yaml.safe_load(rules.read_text())
    data["circuit_breakers"]["severity"] = {"daily_loss": "critical"}
    rules.write_text(yaml.safe_dump(data))
    lab.start("hrm", ARK_HRM_RULESET=str(rules))
    lab.start("executor", ARK_HRM_RULESET=str(rules), **EXEC_ENV)
    for i in range(3):
        env = send_plan(r, i)
        wait_for(lambda env=env: decision_of(r, env.correlation_id), 30, what="a verdict")
        send_bars(r, i)
        wait_for(lambda i=i: risk(r).get("positions_closed", 0) >= i + 1, 30,
                 what=f"close {i}")
    pause = json.loads(wait_for(lambda: r.hget(PAUSE_KEY, "hrm"), 10, what="HRM's pause"))
    assert pause["agents"] == ["kyle", "joey", "kenny"]
    assert "breaker_tripped:daily_loss" in pause["reason"]

    cli_env = lab.env()
    cli = subprocess.run([sys.executable, "-m", "ark_runtime.cli", "hrm", "breaker", "reset",
                          "daily_loss", "--reason", "scripted test path"], env=cli_env,
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    wait_for(lambda: not risk(r)["breakers"]["daily_loss"]["tripped"], 30,
             what="HRM to apply the reset")
    assert r.hget(PAUSE_KEY, "hrm") is None
    state = risk(r)
    assert state["daily_pnl"] == 0 and state["positions_closed"] == 3  # history stays
    chain = audit_dir(cli_env)
    records = [rec for _f, rec in iter_records(chain) if rec.get("action") == "hrm.breaker_reset"]
    assert verify_dir(chain).ok
    assert [rec["result"] for rec in records] == ["started", "ok"]
    assert records[-1]["args"] == {"breaker": "daily_loss", "reason": "scripted test path"}
    env = send_plan(r, 3)
    decision = wait_for(lambda: decision_of(r, env.correlation_id), 30, what="a verdict")
    assert decision["approved"] is True
    status = subprocess.run([sys.executable, "-m", "ark_runtime.cli", "hrm", "risk"],
                            env=cli_env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "daily_loss   ok" in status.stdout, status.stdout
    assert "open +0.000000" in status.stdout, status.stdout
    _open_pnl_follows_the_marks(r, env.correlation_id)


def _open_pnl_follows_the_marks(r: redis.Redis, correlation_id: str) -> None:
    """Plan 3 (approved) fills and stays open while the price rises: HRM's open P&L follows
    each bar's close (the executor's marks); the stop-out moves it to realised."""
    path = [(6, 100, 100.5, 99.5, 100), (7, 100, 101.2, 99.8, 101), (8, 101, 102.4, 100.6, 102),
            (9, 102, 102.1, 94, 95)]  # signal bar, fill bar, a rising bar, the stop-out
    cfg = ExecConfig(slippage_bps=0, fee_bps=1)
    book, _ = SymbolBook(symbol="AAPL").on_order(Order(
        correlation_id=correlation_id, symbol="AAPL", direction="long", stop_loss=95,
        target=112.5, position_size=0.1, quantity=100, hold_bars=20,
        signal_ts=T0 + timedelta(minutes=6)), cfg)
    realised = risk(r)["realised_pnl"]
    for minute, o, h, low, c in path:
        bar = Bar(symbol="AAPL", ts=T0 + timedelta(minutes=minute), open=o, high=h, low=low,
                  close=c, volume=1e6)
        book, events = book.on_bar(bar, cfg)
        env = Envelope.new("market.bar", bar, from_agent="kyle", to_agent="executor",
                           message_id=derive_id("risk-loop-mark", str(minute)))
        r.xadd(inbox("executor"), env.to_fields())
        if book.positions:  # the reference mark: closing at this close, with the costs
            [pos] = book.positions
            exit_fee = 0.1 * (c / pos.fill_price) * 1e-4
            expected = 0.1 * (c - pos.fill_price) / pos.fill_price - pos.entry_fee - exit_fee
            state = wait_for(lambda bar=bar: (s := risk(r)).get("marked_at") ==
                             bar.ts.isoformat() and s, 30, what=f"the mark of {bar.ts}")
            assert state["positions_open"] == 1
            assert state["open_pnl"] == pytest.approx(expected, abs=1e-12)
    [close] = [e for e in events if isinstance(e, PositionClosed)]
    state = wait_for(lambda: (s := risk(r))["positions_open"] == 0 and s, 30,
                     what="HRM to count the stop-out")
    assert state["open_pnl"] == 0 and state["marked_at"] is None
    assert state["realised_pnl"] == pytest.approx(realised + close.pnl, abs=1e-12)
