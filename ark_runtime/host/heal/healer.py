"""REC_02 / MEM_02: the self-healing boot check, `ark heal [--dry-run] [--json] [--clear-panic]`.

Runs as root from a oneshot unit ordered before the agents and the API (ark-heal.service,
Before= + RequiredBy= them): if it exits non-zero, nothing that would act on a broken host
starts. In order it checks, and repairs what it safely can (one module per check):

  panic      $ARK_STATE_DIR/PANIC present -> refuse (only `--clear-panic` lifts it, recorded)
  dirs       heal.dirs: the directory table (owner, group, mode)
  config     heal.config: env files via envcheck, the ruleset; bad -> last known good copy
  venv       heal.venv: every dist at its runtime.lock pin, every RECORD file at its hash
  store      heal.store: integrity + schema; corrupt or missing -> newest verified snapshot
  boot state heal.store: checksum; bad or missing -> rewritten from current facts
  snapshot key  manifest: the per-host HMAC key exists (created here, as root, on first boot)

Every finding is appended as a JSON line to $ARK_LOG_DIR/heal.log and summarised on stdout.
Exit 0: the host is safe (possibly after repairs). Exit 1 (FAILURE): it is not, and the reason
is printed. Exit 77 (NOPERM): the panic flag forbids starting until an operator clears it.

Paths come from host/layout.py (ARK_ROOT_PREFIX moves the whole tree, for tests).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import asdict
from datetime import UTC, datetime

from ark_runtime.exitcodes import ExitCode
from ark_runtime.host.audit.log import actor, audited_command
from ark_runtime.host.heal import config, dirs, store, venv
from ark_runtime.host.heal.context import Finding, HealContext
from ark_runtime.host.heal.store import store_problem
from ark_runtime.host.heal.venv import VENV_BOOTSTRAP, verify_venv
from ark_runtime.host.layout import DirSpec, Layout
from ark_runtime.host.lockfile import parse_lock
from ark_runtime.host.ownership import chown_tree_like

__all__ = ["DirSpec", "Finding", "Healer", "Layout", "VENV_BOOTSTRAP", "parse_lock",
           "store_problem", "verify_venv"]

EXIT_OK = ExitCode.OK
EXIT_UNSAFE = ExitCode.FAILURE
EXIT_PANIC = ExitCode.NOPERM
PANIC_MESSAGE = "host is in panic state; run invoke recover"


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Healer(HealContext):
    """One heal run: the checks in order, then the log."""

    def __init__(self, layout: Layout, *, dry_run: bool = False, clear_panic: bool = False,
                 dirs: list[DirSpec] | None = None) -> None:
        super().__init__(layout, dry_run=dry_run, dirs=dirs)
        self.clear_panic = clear_panic

    def run(self) -> int:
        if not self.check_panic():
            self.record()
            return EXIT_PANIC
        self.check_dirs()
        self.check_config()
        self.check_venv()
        self.check_snapshot_key()
        restored = self.check_store()
        self.check_boot_state(restored)
        self.record()
        return EXIT_OK if self.safe else EXIT_UNSAFE

    # One module per check; these keep the order readable in run().
    def check_dirs(self) -> None:
        dirs.check_dirs(self)

    def check_config(self) -> None:
        config.check_config(self)

    def check_venv(self) -> None:
        venv.check_venv(self)

    def check_store(self) -> bool:
        return store.check_store(self)

    def check_boot_state(self, restored: bool) -> None:
        store.check_boot_state(self, restored)

    def check_snapshot_key(self) -> None:
        """Heal is root and runs first: it creates the key the units hand to the ark user as
        a systemd credential (LoadCredential=), so snapshots are signed from the first one."""
        from ark_runtime.host.snapshot import manifest
        from ark_runtime.host.snapshot import snapshots as snapshot

        key = self.layout.snapshot_key
        if key.is_file():
            return
        if not self.fix("snapshot_key", key, "missing: created (root-only, 0600)"):
            return
        finding = self.findings[-1]
        try:
            manifest.ensure_key(key)
            adopted = snapshot.adopt_legacy(self.layout.snapshots)
        except (manifest.ManifestKeyError, snapshot.SnapshotError, OSError) as exc:
            finding.status, finding.detail = "failed", str(exc)
            return
        if adopted:
            # Upgrade from unkeyed manifests: the ones that still verify are signed once.
            finding.detail += f"; signed {len(adopted)} snapshot(s) made before manifests " \
                              "were keyed"
            finding.data["adopted"] = adopted
            chown_tree_like(self.layout.snapshots, self.layout.state)

    def check_panic(self) -> bool:
        flag = self.layout.panic_flag
        if not flag.exists():
            return True
        content = ""
        with contextlib.suppress(OSError, UnicodeDecodeError):
            content = flag.read_text()[:2000]
        if not self.clear_panic:
            self.add("panic", flag, "failed", PANIC_MESSAGE, flag=content)
            return False
        who = actor()  # the same identity the audit chain records
        if self.fix("panic", flag, f"panic flag cleared by {who}", cleared_by=who,
                    cleared_at=_now(), flag=content):
            flag.unlink()
            with contextlib.suppress(OSError):
                os.sync()
        return True

    def record(self) -> None:
        """heal.log: one JSON line per finding, one run id, appended and fsynced."""
        run_id = _now()
        lines = [json.dumps({"ts": _now(), "run": run_id, "event": "heal",
                             "dry_run": self.dry_run, **asdict(f)}, sort_keys=True)
                 for f in self.findings]
        lines.append(json.dumps({"ts": _now(), "run": run_id, "event": "heal_result",
                                 "dry_run": self.dry_run, "safe": self.safe}))
        if self.dry_run and not self.layout.log.is_dir():
            return  # a dry run creates nothing, not even the log dir
        try:
            self.layout.log.mkdir(parents=True, exist_ok=True)
            log_file = self.layout.log / "heal.log"
            fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, ("\n".join(lines) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            # Not being able to log is reported, but does not by itself make the host unsafe.
            print(f"ark heal: cannot append to {self.layout.log / 'heal.log'}: {exc}",
                  file=sys.stderr)


# --- `ark heal` ------------------------------------------------------------------------------


def _summary(h: Healer, code: int) -> str:
    lines = []
    for f in h.findings:
        if f.status != "ok":
            lines.append(f"{f.status.upper():>12}  {f.check:<10} {f.target}: {f.detail}")
    oks = sum(f.status == "ok" for f in h.findings)
    verdict = {EXIT_OK: "host is safe", EXIT_UNSAFE: "HOST IS NOT SAFE: agents must not start",
               EXIT_PANIC: PANIC_MESSAGE}[code]
    lines.append(f"ark heal{' (dry run)' if h.dry_run else ''}: {oks} checks ok, "
                 f"{len(h.findings) - oks} other; {verdict}")
    return "\n".join(lines)


@audited_command("heal.clear_panic", lambda a: {"dry_run": a.dry_run}, when=lambda a: a.clear_panic)
def _cmd_heal(args: argparse.Namespace) -> int:
    healer = Healer(Layout.from_env(), dry_run=args.dry_run, clear_panic=args.clear_panic)
    code = healer.run()
    if args.json:
        print(json.dumps({"safe": code == EXIT_OK, "exit": int(code), "dry_run": args.dry_run,
                          "findings": [asdict(f) for f in healer.findings]}, indent=2))
    else:
        print(_summary(healer, code), file=sys.stdout if code == EXIT_OK else sys.stderr)
    return code


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    heal = sub.add_parser("heal", help="cold-start checks and repairs before agents start "
                          "(REC_02)")
    heal.add_argument("--dry-run", action="store_true", help="report, change nothing")
    heal.add_argument("--json", action="store_true", help="machine-readable findings")
    heal.add_argument("--clear-panic", action="store_true",
                      help="remove the panic flag (recorded with who/when), then heal")
    heal.set_defaults(func=_cmd_heal)
