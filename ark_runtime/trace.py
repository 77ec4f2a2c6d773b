"""`ark trace ID` (AGENT_03): one flow's whole path across agents and hosts.

ID may be a correlation id or any message id of the flow. Sources: the JSON log files of every
agent (`$ARK_LOG_DIR`, or several `--log-dir`s, e.g. one fetched per host; rotated `.N` and
`.gz` files included) and the decisions stored by HRM (`$ARK_STATE_DIR`). Hops are printed in
time order.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ark_runtime.exitcodes import ExitCode
from ark_runtime.logjson import log_dir
from ark_runtime.settings import declared
from ark_runtime.validators import ValidationError, validate_id


@dataclass
class Hop:
    ts: str
    source: str  # host/agent or "store"
    event: str
    detail: str
    message_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def _log_files(directories: Iterable[Path]) -> Iterator[Path]:
    for d in directories:
        if d.is_dir():
            yield from sorted(p for p in d.iterdir() if ".log" in p.name and p.is_file())


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            for text in fh:
                if '"correlation_id"' not in text:
                    continue
                try:
                    line = json.loads(text)
                except ValueError:
                    continue
                if isinstance(line, dict):
                    yield from expand_hops(line)
    except OSError as exc:
        print(f"ark trace: skipping {path}: {exc}", file=sys.stderr)


def expand_hops(line: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A batch line (`hops`: one record per message an agent committed, logged once per
    batch instead of one line per message) as one line per hop; any other line as itself."""
    hops = line.get("hops")
    if not isinstance(hops, list):
        yield line
        return
    base = {k: v for k, v in line.items() if k != "hops"}
    for hop in hops:
        if isinstance(hop, dict):
            yield {**base, **hop}


def collect(ident: str, directories: list[Path],
            store_hops: Iterable[Hop] | None = None) -> tuple[str | None, list[Hop]]:
    """Returns (correlation id, hops in time order)."""
    lines = [ln for p in _log_files(directories) for ln in _lines(p)]
    correlation = None
    for ln in lines:
        if ln.get("correlation_id") == ident:
            correlation = ident
            break
    if correlation is None:
        for ln in lines:
            if ident in (ln.get("message_id"), ln.get("emitted_id")):
                correlation = ln.get("correlation_id")
                break
    if correlation is None:
        return None, []
    hops = []
    for ln in lines:
        if ln.get("correlation_id") != correlation:
            continue
        hops.append(Hop(
            ts=str(ln.get("ts", "")),
            source=f"{ln.get('host', '?')}/{ln.get('agent', '?')}",
            event=str(ln.get("event", ln.get("level", ""))),
            detail=str(ln.get("msg", "")),
            message_id=ln.get("emitted_id") or ln.get("message_id"),
            raw=ln,
        ))
    hops.extend(store_hops or [])
    hops.sort(key=_when)
    return correlation, hops


def _when(hop: Hop) -> datetime:
    # Logs and the store format timestamps differently; compare instants, not strings.
    try:
        value = datetime.fromisoformat(hop.ts)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def stored_decisions(correlation_id: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """Decisions for one flow (read-only use of HRM's store)."""
    # Imported here: the control side's trace (ark_ops.fleet.trace) reads logs only.
    from ark_runtime.host.layout import store_path
    from ark_runtime.store import MemoryStore, StoreError

    path = store_path(env)
    if not path.exists():
        return []
    with MemoryStore(path) as store:
        out = []
        for rec in store.decisions(correlation_id):
            try:
                rec["symbol"] = store.load(rec["plan_hash"]).get("symbol", "")
            except (KeyError, StoreError):
                rec["symbol"] = "?"
            rec["ts"] = rec["decided_at"]
            out.append(rec)
        return out


def _decision_hops(correlation: str, env: dict[str, str]) -> list[Hop]:
    hops = []
    for rec in stored_decisions(correlation, env):
        verdict = "approved" if rec["approved"] else "rejected"
        rules = ", ".join(v["rule_id"] for v in rec.get("violations", []))
        hops.append(Hop(ts=rec["ts"], source="store/decisions", event="decision",
                        detail=f"{verdict} {rec.get('symbol', '')}" + (f" ({rules})" if rules
                                                                       else ""),
                        message_id=rec.get("message_id"), raw=rec))
    return hops


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="reconstruct one message flow from the logs and the store")
    p.add_argument("id", help="correlation id or any message id of the flow")
    p.add_argument("--log-dir", action="append", type=Path,
                   help="directory of agent logs (repeatable, e.g. one per host); "
                        "default $ARK_LOG_DIR or /var/log/ark")
    p.add_argument("--json", action="store_true", help="one JSON object per hop")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        ident = validate_id(args.id, "trace id")
    except ValidationError as exc:
        print(f"ark trace: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    dirs = args.log_dir or [log_dir()]
    if not all(isinstance(d, Path) for d in dirs):  # argparse reads `--log-dir=--` as []
        print("ark trace: --log-dir needs a directory name", file=sys.stderr)
        return ExitCode.USAGE
    try:
        correlation, hops = collect(ident, dirs)
    except OSError as exc:  # e.g. a --log-dir name too long or not readable
        print(f"ark trace: cannot read the logs in --log-dir: {exc.strerror or exc}",
              file=sys.stderr)
        return ExitCode.NOPERM if isinstance(exc, PermissionError) else ExitCode.USAGE
    if correlation is None:
        print(f"ark trace: no log line mentions {ident} in {', '.join(map(str, dirs))}",
              file=sys.stderr)
        return ExitCode.FAILURE
    try:
        store = _decision_hops(correlation, declared())
    except Exception as exc:  # the logs alone are still a useful trace
        print(f"ark trace: store not readable ({exc}); showing logs only", file=sys.stderr)
        store = []
    hops = sorted(hops + store, key=_when)
    print(f"trace {correlation}: {len(hops)} hops")
    for h in hops:
        if args.json:
            print(json.dumps({"ts": h.ts, "source": h.source, "event": h.event,
                              "message_id": h.message_id, "detail": h.detail}))
        else:
            print(f"{h.ts}  {h.source:<24} {h.event:<14} {h.message_id or '-':<36}  {h.detail}")
    return 0
