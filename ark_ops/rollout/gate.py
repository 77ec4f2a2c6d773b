"""The health gate of a rolling deploy (issue 20 §3): after a batch, each of its hosts must pass
its non-disruptive compliance checks, and its pipeline must still be deciding (a decision newer
than the one seen when the gate started appears within a bound)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ark_ops.errors import OpsError
from ark_ops.fleet.audit import REMOTE_TIMEOUT
from ark_ops.fleet.ssh import FleetHost, run_as_root

# The newest entry id of the decisions stream of the Redis this host's ARK uses, read on the
# host with the settings its units get (root reads the env file; no secret leaves the host).
_NEWEST_DECISION = (
    "from ark_runtime.bus.streams import DECISIONS_STREAM, connect; "
    "e = connect().xrevrange(DECISIONS_STREAM, count=1); print(e[0][0] if e else '0-0')"
)
NEWEST_DECISION_CMD = ("set -a; . /etc/ark/env/infrastructure.env; set +a; "
                       "/opt/ark/venv/bin/python -c " + shlex.quote(_NEWEST_DECISION))
COMPLIANCE_KEYWORD = "not disruptive"  # what the gate may run on a production host
DEFAULT_BOUND_S = 60.0


@dataclass
class GateResult:
    host: str
    ok: bool
    why: str  # one sentence: what passed, or what failed and where to look


def entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.strip().partition("-")
    if not (ms.isascii() and ms.isdigit() and seq.isascii() and (seq.isdigit() or not seq)):
        raise OpsError(f"not a stream entry id: {entry_id[:40]!r}")
    return int(ms), int(seq or 0)


def wait_for_fresh_decision(newest: Callable[[], str], bound_s: float, *,
                            clock: Callable[[], float] = time.monotonic,
                            sleep: Callable[[float], None] = time.sleep,
                            every_s: float = 1.0) -> tuple[bool, float]:
    """(True, seconds waited) once `newest()` returns an entry id past the one it returned
    first; (False, bound) when none came within `bound_s`. A failed read counts as no news
    until the bound (a restarted Redis or agent may take a moment)."""
    start = clock()
    first: tuple[int, int] | None = None
    while True:
        try:
            key = entry_key(newest())
        except Exception:  # noqa: BLE001 - unreachable now is "not flowing yet", not a crash
            key = None
        if key is not None:
            if first is None:
                first = key
            elif key > first:
                return True, clock() - start
        if clock() - start >= bound_s:
            return False, bound_s
        sleep(every_s)


def newest_decision_reader(host: FleetHost) -> Callable[[], str]:
    def read() -> str:
        with host.connect() as conn:
            res = run_as_root(conn, host, NEWEST_DECISION_CMD, timeout=REMOTE_TIMEOUT)
        if res.exited != 0:
            raise OpsError((res.stderr or res.stdout).strip()[-300:])
        return res.stdout.strip().splitlines()[-1]
    return read


def compliance(inventory: str | None, host: str, reports_dir: Path, log=print) -> GateResult:
    """The host's non-disruptive compliance checks (`invoke verify --limit HOST --keyword
    'not disruptive'`), with the report kept under `reports_dir`."""
    from ark_ops.verify.run import verify

    lines: list[str] = []
    rc = verify(inventory=inventory, limit=host, keyword=COMPLIANCE_KEYWORD,
                reports_dir=reports_dir, log=lambda *_: None, echo=lines.append)
    if rc == 0:
        return GateResult(host, True, "compliance checks passed")
    failed = [ln.strip() for ln in lines if ln.startswith("FAILED")][:5]
    for ln in lines[-25:]:
        log(f"    {ln.rstrip()}")
    return GateResult(host, False, f"compliance checks failed (pytest exit {rc}): "
                      + ("; ".join(failed) or "see the report")
                      + f" (report: {reports_dir}/compliance-latest.md)")


def gate(inventory: str | None, host: FleetHost, bound_s: float, reports_dir: Path,
         log=print) -> GateResult:
    """Decisions first (cheap, and the one that matters most), then compliance."""
    flowing, waited = wait_for_fresh_decision(newest_decision_reader(host), bound_s)
    if not flowing:
        return GateResult(host.name, False, f"no fresh decision on {host.name}'s pipeline "
                          f"within {bound_s:.0f}s (check `systemctl status ark.target` and "
                          "`ark errors status` there)")
    log(f"  gate {host.name}: a fresh decision after {waited:.1f}s")
    result = compliance(inventory, host.name, reports_dir, log)
    if result.ok:
        result.why = f"fresh decision after {waited:.1f}s, {result.why}"
    return result
