"""invoke offsite.backup / offsite.restore: signed DR bundles of the fleet into the off-host
restic repository, and back onto a host (REC_03). The restic side is ark_ops.offsite."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ark_ops.fleet.audit import audit_action
from ark_ops.fleet.dr import dr_bundle, dr_restore
from ark_ops.fleet.offsite import (
    BackupResult,
    OffsiteError,
    backup,
    fetch_newest_bundle,
    inventory_repository,
)
from ark_ops.fleet.ssh import HostOutcome
from ark_ops.inventories import resolve_inventory


def backup_fleet(inventory: str | None = None, limit: str | None = None,
                 log=print) -> tuple[list[HostOutcome], BackupResult]:
    """One signed bundle per host, all in one restic snapshot; then forget and check.
    Audited (SEC_03) whoever calls it: the timer, the task, a test."""
    with audit_action("offsite.backup", {}, inventory, limit) as rec:
        outcomes, result = _backup_fleet(inventory, limit, log)
        rec.outcomes(outcomes)
    return outcomes, result


def _backup_fleet(inventory: str | None, limit: str | None,
                  log) -> tuple[list[HostOutcome], BackupResult]:
    inv = resolve_inventory(inventory, log, bring_up=False)
    repo = inventory_repository(inv)  # refuse a missing target before building anything
    with tempfile.TemporaryDirectory(prefix="ark-offsite-") as staging:
        outcomes = dr_bundle(inventory=str(inv), limit=limit, out_dir=Path(staging), log=log)
        if not any(o.ok for o in outcomes):
            raise OffsiteError("no host gave a DR bundle: nothing was sent off-host")
        result = backup(repo, Path(staging), log=log)
    log(f"  off-host: snapshot {result.snapshot} in {repo.url}: {result.files_new} new "
        f"file(s), {result.data_added / 1e6:.1f} MB added; {result.kept} snapshot(s) kept "
        f"(daily {repo.keep_daily}, weekly {repo.keep_weekly}); check: {result.check}")
    return outcomes, result


def restore_from_offsite(host: str, source: str | None = None, inventory: str | None = None,
                         log=print) -> HostOutcome:
    """The newest off-host bundle of `source` (default: `host` itself) restored onto `host`,
    verified against the inventory's pinned key first; audited (SEC_03)."""
    with audit_action("offsite.restore", {"source": source or host}, inventory, host) as rec:
        outcome = _restore_from_offsite(host, source, inventory, log)
        rec.outcomes([outcome])
    return outcome


def _restore_from_offsite(host: str, source: str | None, inventory: str | None,
                          log) -> HostOutcome:
    inv = resolve_inventory(inventory, log, bring_up=False)
    repo = inventory_repository(inv)
    with tempfile.TemporaryDirectory(prefix="ark-offsite-restore-") as tmp:
        bundle = fetch_newest_bundle(repo, source or host, Path(tmp))
        log(f"  fetched {bundle.name} of {source or host} from {repo.url}")
        return dr_restore(str(bundle), host, inventory=str(inv), log=log)
