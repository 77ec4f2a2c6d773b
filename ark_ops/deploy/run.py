"""invoke deploy: the hosts' platforms, the wheelhouse for them, then playbooks/site.yml,
and last the host baseline report (DEPLOY_01)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ark_ops.deploy import baseline as baseline_report
from ark_ops.deploy import platforms as wheel_platforms
from ark_ops.deploy import wheelhouse
from ark_ops.deploy.host_lock import held_on_hosts
from ark_ops.deploy.playbook import PlaybookResult, ansible_strategy, run_playbook
from ark_ops.errors import OpsError
from ark_ops.inventories import held, resolve_inventory
from ark_ops.paths import REPO_ROOT

WHEELHOUSE = REPO_ROOT / "build" / "wheelhouse"
# The ark_baseline role writes here (ark_baseline_report_dir defaults to the same place).
BASELINE_FINDINGS = REPO_ROOT / "reports" / "baseline"
BASELINE_REPORT = REPO_ROOT / "reports" / "baseline-latest.md"


def deploy(inventory: str | None = None, limit: str | None = None, check: bool = False,
           echo: bool = True, log=print, strategy: str | None = None) -> PlaybookResult:
    """Every deploy is an audit record (SEC_03) on the control node and each target host,
    whoever calls it (the task, a test, a benchmark) and however it ends. `strategy`
    (mitogen_linear, linear) overrides ARK_OPS_ANSIBLE_STRATEGY for this deploy."""
    from ark_ops.fleet.audit import audit_action

    inv = resolve_inventory(inventory, log)
    inv_dir = inv if inv.is_dir() else inv.parent
    started = time.monotonic()
    if strategy is not None:
        ansible_strategy(strategy)  # an unknown name is refused before anything runs
    strategy = strategy or strategy_for_become_passwords(inv, limit, log)
    with audit_action("deploy.check" if check else "deploy", {"check": check},
                      inventory, limit) as rec, held(inv_dir, "deploy"), \
            held_on_hosts(inv, limit, log):  # another checkout's deploy is refused too
        # DEPLOY_01: the hosts' (Python, architecture) pairs are read while the local wheel
        # builds; an unsupported pair is refused before pip runs and before any host changes.
        with ThreadPoolExecutor(max_workers=1) as pool:
            facts = pool.submit(wheel_platforms.gather, inv, limit)
            wheelhouse.build(REPO_ROOT / "requirements.lock", WHEELHOUSE, log=log,
                             targets=lambda: list(facts.result().values()))
        baseline_report.clear(BASELINE_FINDINGS)
        try:
            result = run_playbook("site.yml", inv, limit=limit, check=check, echo=echo,
                                  strategy=strategy, identity=rec.identity)
        finally:
            report_baseline(log)  # a refused host's findings matter most when the play failed
        rec.recap(result.recap)
    log(f"deploy finished in {time.monotonic() - started:.1f}s: "
        + ", ".join(f"{h} changed={n}" for h, n in sorted(result.changed.items())))
    return result


def strategy_for_become_passwords(inv, limit: str | None, log=print) -> str | None:
    """`linear` when a target host's sudo wants a password and the operator chose no
    strategy: mitogen_linear reaches such a host as UNREACHABLE ("Connection timed out",
    seen in tests/e2e/test_nonroot.py with a vaulted become password), where Ansible's own
    linear strategy answers sudo's prompt."""
    import os

    from ark_ops.deploy.playbook import STRATEGY_VAR
    from ark_ops.fleet.ssh import inventory_hosts

    if os.environ.get(STRATEGY_VAR, "").strip():
        return None
    if any(h.become.enabled and h.become.password is not None
           for h in inventory_hosts(inv, limit)):
        log("a host's sudo wants a password: this deploy runs with Ansible's linear strategy "
            "(mitogen_linear cannot answer sudo's prompt; docs/FLEET_ACCESS.md)")
        return "linear"
    return None


def report_baseline(log=print) -> None:
    """Print the per-host found / changed / refused summary and write the Markdown report.
    Never raises: a broken findings file must not hide why the playbook stopped."""
    try:
        hosts = baseline_report.write(BASELINE_FINDINGS, BASELINE_REPORT)
    except OpsError as exc:
        log(f"baseline report not written: {exc}")
        return
    for line in baseline_report.summary(hosts):
        log(f"baseline {line}")
    log(f"baseline report: {BASELINE_REPORT.relative_to(REPO_ROOT)}")
