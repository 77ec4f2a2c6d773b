"""invoke dr-bundle / dr-restore: disaster-recovery bundles across the fleet (REC_03)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ark_ops.errors import OpsError
from ark_ops.fleet.audit import actor
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


def _bundle_step(out_dir: Path):
    def step(conn, host: FleetHost) -> FetchedBundle:
        # Built as root, handed over to the SSH user in its own directory, fetched as it.
        with user_tempdir(conn) as handover:
            result = run_as_root(conn, host, remote_script("dr_bundle.sh", handover, host.user),
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
    inv = resolve_inventory(inventory, log, bring_up=False)
    out = (out_dir or DEFAULT_OUT).resolve()
    outcomes = run_everywhere(inventory_hosts(inv, limit), _bundle_step(out))
    for o in outcomes:
        if o.ok:
            b = o.value
            sign_bundle(b.local, inv if inv.is_dir() else inv.parent, host=o.host,
                        signer=actor())
            log(f"  {o.host:<16} {b.size / 1e6:8.1f} MB  built {b.host_seconds:.2f}s  "
                f"fetched {b.fetch_seconds:.2f}s  total {o.seconds:.2f}s  {b.local}")
        else:
            log(f"  {o.host:<16} FAILED after {o.seconds:.1f}s: {o.error}")
    return outcomes


def dr_restore(bundle: str, host: str, inventory: str | None = None, log=print) -> HostOutcome:
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
            result = run_as_root(conn, target, remote_script("dr_restore.sh", remote),
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
