"""Redis memory per bus item, for the capacity table in docs/AGENT_PROTOCOL.md (issue #19).

    .venv/bin/python benchmarks/bus_capacity.py [--runs 3] [--n 20000]

On a fresh redis-server (the same binary the hosts run), writes --n items of one kind the
way the agents write them (a recent-work mark as the commit script sets it, a symbol's Joey
state through Joey's own state commands, a market.bar entry in Joey's inbox, a dead letter as
the consumer writes it) and reports the growth of INFO `used_memory` per item, median over
--runs fresh servers. Prints the CAPACITY dict for ark_runtime/bus/protocol_memory.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "benchmarks"))

from redis_proc import RedisProc  # noqa: E402

from ark_runtime.agents.joey import Joey  # noqa: E402
from ark_runtime.bus.envelope import Envelope  # noqa: E402
from ark_runtime.bus.streams import DEAD_STREAM, Delivery, dead_entry, done_key, inbox  # noqa: E402
from ark_runtime.market import SyntheticAdapter  # noqa: E402
from ark_runtime.patterns import PatternDetector  # noqa: E402
from ark_runtime.settings import default_of  # noqa: E402


def _bar_envelope(bar) -> Envelope:
    return Envelope.new("market.bar", bar, from_agent="kyle", to_agent="joey")


def marks(r, n: int) -> None:
    ttl = default_of("ARK_BUS_DEDUP_TTL_S")
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.set(done_key("joey", str(uuid.uuid4())), f"{1765000000000 + i}-0", ex=ttl)
    pipe.execute()


def inbox_entries(r, n: int) -> None:
    pipe = r.pipeline(transaction=False)
    for bar in SyntheticAdapter(["AAPL"], seed=1, bars=n):
        pipe.xadd(inbox("joey"), _bar_envelope(bar).to_fields())
    pipe.execute()


def dead_letters(r, n: int) -> None:
    pipe = r.pipeline(transaction=False)
    for i, bar in enumerate(SyntheticAdapter(["AAPL"], seed=2, bars=n)):
        env = _bar_envelope(bar)
        d = Delivery(inbox("joey"), f"{1765000000000 + i}-0", env.to_fields(), 6, env)
        pipe.xadd(DEAD_STREAM, dead_entry("joey", d, "delivered 6 times (max 5)"))
    pipe.execute()


def symbols(r, n: int) -> None:
    """n symbols, each with a full window, written by Joey's own state commands."""
    joey = Joey.__new__(Joey)  # only its state writer: no Redis connection, no settings
    joey.window_size = default_of("ARK_JOEY_WINDOW")
    joey.detector = PatternDetector(window=joey.window_size)
    pipe = r.pipeline(transaction=False)
    symbols_ = [f"S{k:05d}" for k in range(n)]
    for bar in SyntheticAdapter(symbols_, seed=3, bars=joey.window_size + 5):
        joey.detector.update(bar)
        for cmd in joey._bar_writes(bar):
            pipe.execute_command(*cmd)
        if len(pipe) > 2000:
            pipe.execute()
    pipe.execute()


def decisions(r, n: int) -> None:
    """hrm.decision entries as HRM writes them: real verdicts of real plans (HRM's own
    handler, in-process, on a throwaway store), cycled to n entries."""
    import itertools
    import tempfile

    from ark_runtime.agents.hrm import Hrm
    from ark_runtime.bus.errors import ErrorBus
    from ark_runtime.bus.streams import DECISIONS_STREAM, BusSettings
    from ark_runtime.planner import AccountConfig, PlanError, plan_trade

    verdicts = []
    with tempfile.TemporaryDirectory() as state:
        hrm = Hrm(env={"ARK_STATE_DIR": state})
        hrm.settings, hrm.r = BusSettings(), r
        hrm.errors = ErrorBus(r, "hrm")
        hrm.setup()
        detector = PatternDetector()
        for bar in SyntheticAdapter(["AAPL", "MSFT"], seed=4, bars=3000):
            for pattern in detector.update(bar):
                try:
                    plan = plan_trade(pattern, AccountConfig(account_size=100000))
                except PlanError:
                    continue
                env = Envelope.new("trade.plan", plan, from_agent="kenny", to_agent="hrm")
                verdicts += [out.to_fields() for _stream, out in hrm.handle(env)]
            if len(verdicts) >= 100:
                break
        hrm.persist()
    r.delete(DECISIONS_STREAM)
    before = int(r.info("memory")["used_memory"])
    pipe = r.pipeline(transaction=False)
    for fields in itertools.islice(itertools.cycle(verdicts), n):
        pipe.xadd(DECISIONS_STREAM, fields)
    pipe.execute()
    return before


KINDS = {"mark": marks, "symbol": symbols, "inbox_entry": inbox_entries,
         "dead_entry": dead_letters, "decision_entry": decisions}


def per_item(kind: str, n: int) -> float:
    with RedisProc() as server:
        r = server.client()
        before = int(r.info("memory")["used_memory"])
        before = KINDS[kind](r, n) or before  # a kind that sets up first says where it began
        after = int(r.info("memory")["used_memory"])
        return (after - before) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=20000, help="items per run (symbols: n / 20)")
    args = ap.parse_args(argv)
    result = {}
    for kind in KINDS:
        n = max(50, args.n // 20) if kind == "symbol" else args.n
        samples = [per_item(kind, n) for _ in range(args.runs)]
        result[kind] = round(statistics.median(samples))
        print(f"{kind:12} {n:>7} items: {[round(x) for x in samples]} B/item "
              f"(median {result[kind]})", flush=True)
    print("CAPACITY =", json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
