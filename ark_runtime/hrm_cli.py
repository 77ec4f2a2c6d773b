"""`ark hrm risk` and `ark hrm breaker reset NAME --reason ...`: the operator's side of HRM's
breakers (AGENT_04). Both go through Redis, so they work from any host of the pipeline, the
one holding HRM's store or not.

Exit codes: 0 ok (`risk`: no breaker tripped), 1 `risk` found a breaker tripped, 64 bad
arguments (an unknown breaker, an empty reason), 69 Redis unreachable, 78 bad settings.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from ark_runtime.bus.cli import _client, _operator_errors
from ark_runtime.exitcodes import ExitCode
from ark_runtime.host.audit.log import audited_command
from ark_runtime.hrm.breakers import BREAKERS


def register(sub: argparse._SubParsersAction) -> None:
    hrm = sub.add_parser("hrm", help="HRM's risk state and breakers")
    hsub = hrm.add_subparsers(dest="hrm_command", required=True, metavar="ACTION")
    risk = hsub.add_parser("risk", help="the published risk state (exit 1 while a breaker "
                                        "is tripped)")
    risk.add_argument("--json", action="store_true", help="the document as HRM published it")
    risk.set_defaults(func=_risk)
    breaker = hsub.add_parser("breaker", help="breaker actions")
    bsub = breaker.add_subparsers(dest="breaker_command", required=True, metavar="ACTION")
    reset = bsub.add_parser("reset", help="clear a tripped breaker (audited)")
    reset.add_argument("name", choices=BREAKERS)
    reset.add_argument("--reason", required=True,
                       help="why it is safe to trade again (recorded in the audit chain)")
    reset.set_defaults(func=_reset)


@_operator_errors
def _risk(args: argparse.Namespace) -> int:
    from ark_runtime.bus.risk import read_risk_state

    state = read_risk_state(_client())
    if state is None:
        print("no risk state published: HRM has not run against this Redis yet",
              file=sys.stderr)
        return ExitCode.UNAVAILABLE
    tripped = [n for n, b in state["breakers"].items() if b["tripped"]]
    if args.json:
        print(json.dumps(state, indent=2, sort_keys=True))
    else:
        for name, b in state["breakers"].items():
            print(f"breaker {name:<12} {'TRIPPED' if b['tripped'] else 'ok':<8} "
                  f"value {b['value']:.6g} limit {b['limit']} severity {b['severity']}")
        print(f"session {state['session']} ({state['session_timezone']}): daily P&L "
              f"{state['daily_pnl']:+.6f}; realised {state['realised_pnl']:+.6f}; open "
              f"{_signed(state.get('open_pnl'))} (marked {state.get('marked_at') or '-'}); "
              f"loss streak "
              f"{state['loss_streak']}; positions open {state['positions_open']}, closed "
              f"{state['positions_closed']}; exposure {state['exposure']['total']:.4f}")
    return ExitCode.FAILURE if tripped else ExitCode.OK


def _signed(value: float | None) -> str:
    """A P&L figure, or "unknown" when the publishing HRM predates it."""
    return "unknown" if value is None else f"{value:+.6f}"


@_operator_errors
@audited_command("hrm.breaker_reset", lambda a: {"breaker": a.name, "reason": a.reason})
def _reset(args: argparse.Namespace) -> int:
    from ark_runtime.bus.risk import send_reset

    if not args.reason.strip():
        print("ark hrm breaker reset: --reason must say why (it is recorded)", file=sys.stderr)
        return ExitCode.USAGE
    env = send_reset(_client(), args.name, args.reason.strip(),
                     by=f"operator:{getpass.getuser()}")
    print(f"reset of {args.name} queued for HRM (message {env.message_id}); "
          "`ark hrm risk` shows it applied")
    return ExitCode.OK
