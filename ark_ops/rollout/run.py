"""`invoke deploy --serial N` (issue 20 §3): roll the fleet batch by batch.

The first batch is one host (the canary), then batches of N, in inventory order. After each
batch every host in it must pass the health gate (ark_ops/rollout/gate.py); a batch whose
playbook or gate fails stops the roll, is rolled back to the config version each of its hosts
had before the batch (GOV_02: files and venv, `ark config rollback`), and no later batch is
touched. The roll, each batch's deploy and each rollback are audit records (SEC_03).

The roll runs site.yml once per batch with --limit, rather than `serial:` inside the play, so
the gate can be the control node's compliance suite and the rollback the control node's
decision; the wheelhouse is built once for the whole roll.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ark_ops.errors import OpsError
from ark_ops.fleet.audit import ARK, AuditIdentity, audit_action
from ark_ops.rollout.gate import DEFAULT_BOUND_S, GateResult


def plan_batches(hosts: Sequence[str], serial: int,
                 canary: str | None = None) -> list[list[str]]:
    """The canary (`canary`, else the first host) alone, then batches of `serial`, in the
    hosts' order."""
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 1:
        raise OpsError(f"--serial must be a whole number of hosts, 1 or more; got {serial!r}")
    names = list(hosts)
    if len(set(names)) != len(names):
        raise OpsError("a host appears twice in the roll: " + ", ".join(
            sorted({h for h in names if names.count(h) > 1})))
    if canary is not None:
        if canary not in names:
            raise OpsError(f"--canary {canary[:80]!r} is not one of the hosts this roll "
                           f"deploys: {', '.join(names) or 'none'}")
        names = [canary] + [h for h in names if h != canary]
    if not names:
        return []
    rest = names[1:]
    return [names[:1]] + [rest[i:i + serial] for i in range(0, len(rest), serial)]


@dataclass
class RollSteps:
    """What a roll does to hosts. `roll()` wires the real ones (Ansible, testinfra, SSH);
    unit tests replace only these, because they need hosts."""

    # (batch, the batch's AuditIdentity for the hosts' own records); raises when it fails
    deploy: Callable[[list[str], AuditIdentity], None]
    gate: Callable[[str], GateResult]
    heads: Callable[[list[str]], dict[str, int | None]]  # newest config version per host
    # raises when it fails; returns a one-line summary. Audited by itself (config.rollback).
    rollback: Callable[[str, int], str]


@dataclass
class RollReport:
    batches: list[list[str]]
    done: list[str] = field(default_factory=list)  # upgraded and gated
    failed_batch: int | None = None  # index into batches
    why: str = ""
    rolled_back: dict[str, str] = field(default_factory=dict)  # host -> summary or error
    untouched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed_batch is None


def run_roll(batches: list[list[str]], steps: RollSteps, inventory: str | None,
             rec, log=print) -> RollReport:
    """Deploy, gate and (on failure) roll back batch after batch; `rec` is the roll's audit
    record (ark_ops.audit.ControlAction): each host ends ok, failed or untouched in it."""
    report = RollReport(batches)
    for i, batch in enumerate(batches):
        label = "canary" if i == 0 else f"batch {i + 1}/{len(batches)}"
        log(f"roll: {label}: {', '.join(batch)}")
        before = steps.heads(batch)
        why = _deploy_and_gate(i, batch, steps, inventory, log)
        if why is None:
            report.done += batch
            for h in batch:
                rec.hosts[h] = "ok"
            continue
        report.failed_batch, report.why = i, why
        report.untouched = [h for b in batches[i + 1:] for h in b]
        log(f"roll: STOPPED at {label}: {why}")
        _roll_back(batch, before, steps, inventory, report, log)
        for h in batch:
            rec.hosts[h] = "failed"
            rec.details[h] = f"{why}; rollback: {report.rolled_back[h]}"
        rec.mark_failed(f"stopped at {label} ({', '.join(batch)}): {why}; "
                        f"untouched: {', '.join(report.untouched) or 'none'}")
        return report
    log(f"roll: every batch passed its gate ({len(report.done)} host(s))")
    return report


def _deploy_and_gate(i: int, batch: list[str], steps: RollSteps, inventory: str | None,
                     log) -> str | None:
    """None when the batch is deployed and every host passed its gate; else why not."""
    with audit_action("deploy", {"roll_batch": i + 1}, inventory, ",".join(batch)) as drec:
        try:
            steps.deploy(batch, drec.identity)
        except Exception as exc:  # noqa: BLE001 - a failed batch is the roll's to handle
            drec.mark_failed(f"playbook: {exc}"[:300])
            return f"the playbook failed on the batch: {str(exc)[:300]}"
        failures = []
        for host in batch:
            result = steps.gate(host)
            log(f"  gate {host}: {'PASS' if result.ok else 'FAIL'}: {result.why}")
            drec.hosts[host] = "ok" if result.ok else "failed"
            if not result.ok:
                drec.details[host] = f"gate: {result.why}"[:300]
                failures.append(f"{host}: {result.why}")
        return "gate failed: " + " | ".join(failures) if failures else None


def _roll_back(batch: list[str], before: dict[str, int | None], steps: RollSteps,
               inventory: str | None, report: RollReport, log) -> None:
    for host in batch:
        to = before.get(host)
        if to is None:
            report.rolled_back[host] = ("NOT rolled back: the host had no recorded config "
                                        "version before this roll (a first deploy)")
            log(f"  rollback {host}: {report.rolled_back[host]}")
            continue
        try:
            report.rolled_back[host] = steps.rollback(host, to)
        except Exception as exc:  # noqa: BLE001 - every host of the batch is tried
            report.rolled_back[host] = f"FAILED: {exc}"[:400]
        log(f"  rollback {host} to version {to}: {report.rolled_back[host]}")


# --- the real steps ------------------------------------------------------------------------


def _config_heads(inventory: str | None, hosts: list[str]) -> dict[str, int | None]:
    from ark_ops.fleet.config_history import _hosts, _run
    from ark_ops.fleet.ssh import run_everywhere

    targets = _hosts(inventory, ",".join(hosts))
    outcomes = run_everywhere(targets, _run([ARK, "config", "list", "--json", "--limit", "1"]))
    heads: dict[str, int | None] = {}
    for o in outcomes:
        if not o.ok:
            # A venv-less host (never deployed) has no history either; anything else stops
            # the roll before the batch changes, since it could not be rolled back.
            if "No such file" in (o.error or "") or "not found" in (o.error or ""):
                heads[o.host] = None
                continue
            raise OpsError(f"{o.host}: could not read its config versions before the batch "
                           f"(nothing changed): {o.error}")
        rows = [json.loads(x) for x in o.value.splitlines() if x.strip()]
        heads[o.host] = int(rows[-1]["version"]) if rows else None
    return heads


def _rollback_one(inventory: str | None, host: str, to: int) -> str:
    from ark_ops.fleet.config_history import rollback

    lines: list[str] = []
    [outcome] = rollback(to, inventory, host, log=lines.append)  # its own config.rollback record
    if not outcome.ok:
        raise OpsError(outcome.error or "failed")
    return " ".join(x.strip() for x in lines)


def roll(inventory: str | None = None, limit: str | None = None, serial: int = 1,
         gate_bound_s: float = DEFAULT_BOUND_S, canary: str | None = None,
         strategy: str | None = None, log=print) -> RollReport:
    """The whole roll under the inventory's deploy lock, audited as `deploy.roll`."""
    from ark_ops.deploy import baseline as baseline_report
    from ark_ops.deploy import platforms as wheel_platforms
    from ark_ops.deploy import wheelhouse
    from ark_ops.deploy.playbook import run_playbook
    from ark_ops.deploy.run import BASELINE_FINDINGS, WHEELHOUSE, report_baseline
    from ark_ops.fleet.ssh import inventory_hosts
    from ark_ops.inventories import held, resolve_inventory
    from ark_ops.paths import REPO_ROOT
    from ark_ops.rollout.gate import gate

    if not 1 <= gate_bound_s <= 3600:
        raise OpsError(f"--gate-seconds must be between 1 and 3600, got {gate_bound_s!r}")
    inv = resolve_inventory(inventory, log)
    inv_dir = inv if inv.is_dir() else inv.parent
    hosts = {h.name: h for h in inventory_hosts(inv, limit, group="ark:ark_monitoring")}
    batches = plan_batches(list(hosts), serial, canary)
    reports = REPO_ROOT / "reports" / "rollout" / time.strftime("%Y%m%dT%H%M%S")
    started = time.monotonic()
    with audit_action("deploy.roll", {"serial": serial, "gate_bound_s": gate_bound_s,
                                      "batches": [",".join(b) for b in batches]},
                      str(inv), limit) as rec, held(inv_dir, "deploy"):
        with ThreadPoolExecutor(max_workers=1) as pool:
            facts = pool.submit(wheel_platforms.gather, inv, limit)
            wheelhouse.build(REPO_ROOT / "requirements.lock", WHEELHOUSE, log=log,
                             targets=lambda: list(facts.result().values()))
        baseline_report.clear(BASELINE_FINDINGS)
        steps = RollSteps(
            deploy=lambda batch, identity: run_playbook(
                "site.yml", inv, limit=",".join(batch), strategy=strategy, identity=identity),
            gate=lambda host: gate(str(inv), hosts[host], gate_bound_s, reports / host, log),
            heads=lambda batch: _config_heads(str(inv), batch),
            rollback=lambda host, to: _rollback_one(str(inv), host, to),
        )
        try:
            report = run_roll(batches, steps, str(inv), rec, log)
        finally:
            report_baseline(log)
    log(f"roll finished in {time.monotonic() - started:.1f}s: "
        + ("every host upgraded" if report.ok else
           f"stopped; rolled back {', '.join(report.rolled_back)}; "
           f"untouched {', '.join(report.untouched) or 'none'}"))
    return report
