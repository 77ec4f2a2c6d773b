"""invoke dr-bundle / dr-restore: disaster-recovery bundles across the fleet (REC_03)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ark_ops.errors import OpsError
from ark_ops.fleet.audit import AuditIdentity, audit_action
from ark_ops.fleet.dr_sign import sign_bundle, verify_bundle_chain, verify_signature
from ark_ops.fleet.ssh import (
    FleetHost,
    HostOutcome,
    inventory_hosts,
    remote_script,
    run_as_root,
    run_everywhere,
    user_tempdir,
)
from ark_ops.inventories import resolve_inventory
from ark_ops.paths import REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "reports" / "dr"


@dataclass
class FetchedBundle:
    local: Path
    size: int
    sha256: str
    host_seconds: float  # building the archive on the host
    fetch_seconds: float


def _bundle_step(out_dir: Path, identity: AuditIdentity):
    def step(conn, host: FleetHost) -> FetchedBundle:
        # Built as root, handed over to the SSH user in its own directory, fetched as it.
        with user_tempdir(conn) as handover:
            result = run_as_root(conn, host, remote_script(
                "dr_bundle.sh", handover, host.user, identity.who, identity.correlation_id),
                timeout=600)
            if result.exited != 0:
                raise OpsError((result.stderr or result.stdout).strip()[-600:])
            info = json.loads(result.stdout.strip().splitlines()[-1])
            local_dir = out_dir / host.name
            local_dir.mkdir(parents=True, exist_ok=True)
            local = local_dir / Path(info["path"]).name
            started = time.monotonic()
            conn.get(f"{handover}/{local.name}", str(local))
            fetched = time.monotonic() - started
        if local.stat().st_size != info["size"]:
            raise OpsError(f"fetched {local.stat().st_size} bytes, host wrote {info['size']}")
        return FetchedBundle(local, info["size"], info["sha256"], info["seconds"], fetched)

    return step


def dr_bundle(inventory: str | None = None, limit: str | None = None,
              out_dir: Path | None = None, log=print) -> list[HostOutcome]:
    """A bundle from every host, fetched and signed; audited (SEC_03) whoever calls it."""
    with audit_action("dr-bundle", {"out": str(out_dir or "")}, inventory, limit) as rec:
        outcomes = _dr_bundle(inventory, limit, out_dir, log, rec.identity)
        rec.outcomes(outcomes)
    return outcomes


def _dr_bundle(inventory: str | None, limit: str | None, out_dir: Path | None, log,
               identity: AuditIdentity) -> list[HostOutcome]:
    inv = resolve_inventory(inventory, log, bring_up=False)
    out = (out_dir or DEFAULT_OUT).resolve()
    outcomes = run_everywhere(inventory_hosts(inv, limit), _bundle_step(out, identity))
    for o in outcomes:
        if o.ok:
            b = o.value
            sign_bundle(b.local, inv if inv.is_dir() else inv.parent, host=o.host,
                        signer=identity.who)
            log(f"  {o.host:<16} {b.size / 1e6:8.1f} MB  built {b.host_seconds:.2f}s  "
                f"fetched {b.fetch_seconds:.2f}s  total {o.seconds:.2f}s  {b.local}")
        else:
            log(f"  {o.host:<16} FAILED after {o.seconds:.1f}s: {o.error}")
    return outcomes


def dr_restore(bundle: str, host: str, inventory: str | None = None, log=print) -> HostOutcome:
    """Restore a bundle onto one host; audited (SEC_03) whoever calls it."""
    with audit_action("dr-restore", {"bundle": bundle}, inventory, host) as rec:
        outcome = _dr_restore(bundle, host, inventory, log, rec.identity)
        rec.outcomes([outcome])
    return outcome


def _dr_restore(bundle: str, host: str, inventory: str | None, log,
                identity: AuditIdentity) -> HostOutcome:
    path = Path(bundle)
    if not path.is_file():
        raise OpsError(f"bundle {bundle} does not exist")
    inv = resolve_inventory(inventory, log, bring_up=False)
    signed = verify_signature(path, inv if inv.is_dir() else inv.parent)  # before any write
    log(f"  signature ok: made on {signed['host']} by {signed['signer']} at "
        f"{signed['signed_at']}; {verify_bundle_chain(path)}")
    targets = inventory_hosts(inv, host)
    if len(targets) != 1:
        raise OpsError(f"--host must name exactly one host, {host!r} matches "
                       f"{len(targets)}: {', '.join(t.name for t in targets)}")

    def step(conn, target: FleetHost) -> str:
        # Uploaded as the SSH user into its own directory; restored from there as root.
        with user_tempdir(conn) as upload:
            remote = f"{upload}/{path.name}"
            conn.put(str(path), remote)
            result = run_as_root(conn, target, remote_script(
                "dr_restore.sh", remote, identity.who, identity.correlation_id),
                                 timeout=600)
        if result.exited != 0:
            raise OpsError((result.stderr or result.stdout).strip()[-800:])
        return result.stdout.strip()

    outcome = run_everywhere(targets, step)[0]
    if outcome.ok:
        log(f"  {outcome.host:<16} RESTORED in {outcome.seconds:.1f}s")
    else:
        log(f"  {outcome.host:<16} FAILED after {outcome.seconds:.1f}s: {outcome.error}")
    return outcome
