"""REC_02 / MEM_02: the self-healing boot check, `ark heal [--dry-run] [--json] [--clear-panic]`.

Runs as root from a oneshot unit ordered before the agents and the API (ark-heal.service,
Before= + RequiredBy= them): if it exits non-zero, nothing that would act on a broken host
starts. In order it checks, and repairs what it safely can:

  panic      $ARK_STATE_DIR/PANIC present -> refuse (only `--clear-panic` lifts it, recorded)
  dirs       the directory table (owner, group, mode); missing -> recreated, wrong -> fixed
  config     /etc/ark/env/<domain>.env via envcheck, HRM_RULESET.yaml via check_ruleset_file;
             bad -> the last known good copy ($ARK_STATE_DIR/lkg/, saved whenever one passes)
  venv       every dist in the venv at the version runtime.lock pins, every file of each
             dist's RECORD at its sha256 (pip checked the wheels' hashes at install; RECORD
             carries them to the installed files); no repair: redeploy
  store      PRAGMA integrity_check + MEMORY_SPEC schema, read-only; corrupt or missing ->
             restore the newest snapshot that verifies, loss bounded by that snapshot's age
  boot state checksum; bad or missing -> rewritten from current facts

Every finding is appended as a JSON line to $ARK_LOG_DIR/heal.log and summarised on stdout.
Exit 0: the host is safe (possibly after repairs). Exit 1: it is not, and the reason is
printed. Exit 4: panic flag set.

Root prefix: ARK_ROOT_PREFIX (or the `prefix` argument) moves /opt/ark, /etc/ark, /var/lib/ark
and /var/log/ark under another directory, so tests run without root and without touching /.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import sqlite3
import stat
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ark_runtime.host.atomic import atomic_write_bytes
from ark_runtime.host.audit import audited_command

EXIT_OK = 0
EXIT_UNSAFE = 1
EXIT_PANIC = 4
PANIC_MESSAGE = "host is in panic state; run invoke recover"
# Dists that `python -m venv` bootstraps itself: allowed without a lock pin, still hash-checked.
VENV_BOOTSTRAP = {"pip", "setuptools", "wheel"}


# --- where things are ------------------------------------------------------------------------


@dataclass(frozen=True)
class DirSpec:
    path: Path
    owner: str
    group: str
    mode: int


@dataclass(frozen=True)
class Layout:
    prefix: Path
    state: Path
    log: Path
    config: Path
    store: Path
    snapshots: Path
    venv: Path
    lock: Path
    ruleset: Path
    user: str
    group: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, prefix: str | None = None) -> Layout:
        env = os.environ if env is None else env
        pre = Path(prefix if prefix is not None else env.get("ARK_ROOT_PREFIX", "") or "/")

        def under(p: str) -> Path:
            return pre / p.lstrip("/")

        state = Path(env.get("ARK_STATE_DIR") or under("/var/lib/ark"))
        config = Path(env.get("ARK_CONFIG_DIR") or under("/etc/ark"))
        return cls(
            prefix=pre,
            state=state,
            log=Path(env.get("ARK_LOG_DIR") or under("/var/log/ark")),
            config=config,
            store=Path(env.get("ARK_STORE_PATH") or state / "memory.db"),
            snapshots=Path(env.get("ARK_SNAPSHOT_DIR") or state / "snapshots"),
            venv=Path(env.get("ARK_VENV") or under("/opt/ark/venv")),
            lock=Path(env.get("ARK_RUNTIME_LOCK") or under("/opt/ark/wheelhouse/runtime.lock")),
            ruleset=Path(env.get("ARK_HRM_RULESET") or config / "HRM_RULESET.yaml"),
            user=env.get("ARK_USER") or "ark",
            group=env.get("ARK_GROUP") or "ark",
        )

    @property
    def lkg(self) -> Path:
        return self.state / "lkg"

    def dirs(self) -> list[DirSpec]:
        """The directory table (DEPLOY_01 sets it up; heal keeps it so). /etc/ark/env is
        root-only: the env files hold secrets and systemd reads them as root."""
        u, g = self.user, self.group
        return [
            DirSpec(self.prefix / "opt/ark", "root", "root", 0o755),
            DirSpec(self.config, "root", g, 0o750),
            DirSpec(self.config / "env", "root", "root", 0o700),
            DirSpec(self.state, u, g, 0o750),
            DirSpec(self.log, u, g, 0o750),
        ]


# --- findings --------------------------------------------------------------------------------


@dataclass
class Finding:
    check: str  # panic | dirs | config | venv | store | boot_state
    target: str
    status: str  # ok | repaired | would_repair | failed
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _invoker() -> str:
    # $ARK_ACTOR (the operator `invoke recover` names), else the person behind sudo, else the
    # login name, else the uid's name.
    for var in ("ARK_ACTOR", "SUDO_USER", "LOGNAME", "USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


class Healer:
    def __init__(self, layout: Layout, *, dry_run: bool = False, clear_panic: bool = False,
                 dirs: list[DirSpec] | None = None) -> None:
        self.l = layout
        self.dry_run = dry_run
        self.clear_panic = clear_panic
        self.dir_table = dirs if dirs is not None else layout.dirs()
        self.findings: list[Finding] = []

    def add(self, check: str, target: object, status: str, detail: str, **data: Any) -> Finding:
        f = Finding(check, str(target), status, detail, data)
        self.findings.append(f)
        return f

    def fix(self, check: str, target: object, detail: str, **data: Any) -> bool:
        """Record a repair; False in dry-run, where the caller must not change anything."""
        self.add(check, target, "would_repair" if self.dry_run else "repaired", detail, **data)
        return not self.dry_run

    @property
    def safe(self) -> bool:
        return not any(f.status == "failed" for f in self.findings)

    # --- run ---------------------------------------------------------------------------------

    def run(self) -> int:
        if not self.check_panic():
            self.record()
            return EXIT_PANIC
        self.check_dirs()
        self.check_config()
        self.check_venv()
        restored = self.check_store()
        self.check_boot_state(restored)
        self.record()
        return EXIT_OK if self.safe else EXIT_UNSAFE

    def record(self) -> None:
        """heal.log: one JSON line per finding, one run id, appended and fsynced."""
        run_id = _now()
        lines = [json.dumps({"ts": _now(), "run": run_id, "event": "heal",
                             "dry_run": self.dry_run, **asdict(f)}, sort_keys=True)
                 for f in self.findings]
        lines.append(json.dumps({"ts": _now(), "run": run_id, "event": "heal_result",
                                 "dry_run": self.dry_run, "safe": self.safe}))
        if self.dry_run and not self.l.log.is_dir():
            return  # a dry run creates nothing, not even the log dir
        try:
            self.l.log.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.l.log / "heal.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, ("\n".join(lines) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            # Not being able to log is reported, but does not by itself make the host unsafe.
            print(f"ark heal: cannot append to {self.l.log / 'heal.log'}: {exc}",
                  file=sys.stderr)

    # --- panic -------------------------------------------------------------------------------

    def check_panic(self) -> bool:
        flag = self.l.state / "PANIC"
        if not flag.exists():
            return True
        content = ""
        with contextlib.suppress(OSError, UnicodeDecodeError):
            content = flag.read_text()[:2000]
        if not self.clear_panic:
            self.add("panic", flag, "failed", PANIC_MESSAGE, flag=content)
            return False
        who = _invoker()
        if self.fix("panic", flag, f"panic flag cleared by {who}", cleared_by=who,
                    cleared_at=_now(), flag=content):
            flag.unlink()
            with contextlib.suppress(OSError):
                os.sync()
        return True

    # --- directories -------------------------------------------------------------------------

    def check_dirs(self) -> None:
        for spec in self.dir_table:
            try:
                uid = pwd.getpwnam(spec.owner).pw_uid
                gid = grp.getgrnam(spec.group).gr_gid
            except KeyError as exc:
                self.add("dirs", spec.path, "failed",
                         f"{exc.args[0]}: run the deploy (it creates the ark user and group)")
                continue
            want = f"{spec.owner}:{spec.group} {spec.mode:04o}"
            if spec.path.is_symlink() or (spec.path.exists() and not spec.path.is_dir()):
                self.add("dirs", spec.path, "failed", f"not a directory (want {want}); "
                         "move it away and rerun ark heal")
                continue
            if not spec.path.exists():
                if self.fix("dirs", spec.path, f"missing: recreated {want}"):
                    spec.path.mkdir(parents=True, mode=0o700)
                    self._set(spec.path, uid, gid, spec.mode)
                continue
            st = spec.path.stat()
            wrong = []
            if (st.st_uid, st.st_gid) != (uid, gid):
                wrong.append(f"owner {_name(st.st_uid, st.st_gid)}")
            if stat.S_IMODE(st.st_mode) != spec.mode:
                wrong.append(f"mode {stat.S_IMODE(st.st_mode):04o}")
            if not wrong:
                self.add("dirs", spec.path, "ok", want)
                continue
            if (st.st_uid, st.st_gid) != (uid, gid) and os.geteuid() != 0:
                self.add("dirs", spec.path, "failed",
                         f"{', '.join(wrong)}, want {want}: needs root to fix")
                continue
            if self.fix("dirs", spec.path, f"{', '.join(wrong)} -> {want}"):
                self._set(spec.path, uid, gid, spec.mode)

    @staticmethod
    def _set(path: Path, uid: int, gid: int, mode: int) -> None:
        if os.geteuid() == 0:
            os.chown(path, uid, gid)
        os.chmod(path, mode)

    # --- config + last known good ------------------------------------------------------------

    def _config_files(self) -> list[tuple[str, Path, str | None]]:
        """(kind, path, env domain) for every config file heal checks."""
        out: list[tuple[str, Path, str | None]] = [
            ("ruleset", self.l.ruleset, None)]
        env_dir = self.l.config / "env"
        names = {p.name for p in env_dir.glob("*.env")} if env_dir.is_dir() else set()
        if self._lkg_trusted():
            names |= {p.name for p in (self.l.lkg / "env").glob("*.env")}
        out += [("env", env_dir / n, n.removesuffix(".env")) for n in sorted(names)]
        return out

    def _problems(self, kind: str, path: Path, domain: str | None) -> list[str]:
        if not path.is_file():
            return ["missing"]
        if kind == "ruleset":
            from ark_runtime.hrm import check_ruleset_file

            return list(check_ruleset_file(path))
        from ark_runtime.host.envcheck import EnvSchemaError, check_env_file, load_env_schema

        try:
            schema = load_env_schema()
        except EnvSchemaError as exc:
            return [str(exc)]
        if domain not in schema.domains:
            return [f"unknown credential domain {domain!r} (file name must be <domain>.env)"]
        # Same call as the deploy's validate step (`ark env check FILE --domain D`).
        return [str(p) for p in check_env_file(path, schema, domains=[domain])
                if p.severity == "error"]

    def _lkg_path(self, kind: str, path: Path) -> Path:
        return self.l.lkg / ("env" if kind == "env" else "") / path.name

    def _lkg_trusted(self) -> bool:
        """The LKG copies are written back into /etc/ark as root. They sit under the ark-owned
        state dir, so only trust them while the lkg dir is ours and closed to others: else the
        ark user could plant a config that root installs."""
        d = self.l.lkg
        try:
            for p in (d, d / "env"):
                if p.exists():
                    st = p.lstat()
                    if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid()
                            or stat.S_IMODE(st.st_mode) & 0o077):
                        return False
        except OSError:
            return False
        return d.is_dir()

    def check_config(self) -> None:
        for kind, path, domain in self._config_files():
            problems = self._problems(kind, path, domain)
            lkg = self._lkg_path(kind, path)
            if not problems:
                self.add("config", path, "ok", "passes its schema")
                self._save_lkg(path, lkg)
                continue
            why = "; ".join(problems[:5])
            good = (lkg if self._lkg_trusted() and lkg.is_file()
                    and not self._problems(kind, lkg, domain) else None)
            if good is None:
                self.add("config", path, "failed",
                         f"{why}; no last known good copy to fall back to: fix it and "
                         f"rerun ark heal (check with: ark env check / python -m ark_runtime.hrm "
                         f"check)")
                continue
            if self.fix("config", path, f"{why}; restored last known good copy from {good}",
                        problems=problems):
                self._install_lkg(kind, path, good)

    def _save_lkg(self, path: Path, lkg: Path) -> None:
        if self.dry_run:
            return
        data = path.read_bytes()
        if lkg.is_file() and lkg.read_bytes() == data:
            return
        for d in (self.l.lkg, lkg.parent):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)  # holds copies of secrets: root only
        atomic_write_bytes(lkg, data, mode=0o600)

    def _install_lkg(self, kind: str, path: Path, good: Path) -> None:
        # Keep the rejected file (it may be the only copy of someone's edit): root-only.
        if path.exists():
            rejected = self.l.lkg / "rejected"
            rejected.mkdir(mode=0o700, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            shutil.copy2(path, rejected / f"{path.name}.{stamp}")
            os.chmod(rejected / f"{path.name}.{stamp}", 0o600)
            st = path.stat()
            mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        else:
            mode = 0o600 if kind == "env" else 0o640
            uid, gid = 0, _gid(self.l.group) if kind == "ruleset" else 0
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, good.read_bytes(), mode=0o600 if kind == "env" else mode)
        if os.geteuid() == 0:
            os.chown(path, uid, gid)

    # --- venv against the lock ---------------------------------------------------------------

    def check_venv(self) -> None:
        venv, lock = self.l.venv, self.l.lock
        if not lock.is_file():
            self.add("venv", lock, "failed", "runtime.lock is missing: redeploy (invoke deploy)")
            return
        text = lock.read_text(encoding="utf-8")
        # The deploy writes sha256 of the lock with trailing newlines stripped (Ansible's
        # file lookup); the venv dir is named by its first 12 hex digits.
        lock_sha = hashlib.sha256(text.rstrip("\n").encode()).hexdigest()
        marker = venv / ".ark-installed"
        if not venv.is_dir():
            self.add("venv", venv, "failed", "venv is missing: redeploy (invoke deploy)")
            return
        got = marker.read_text().strip() if marker.is_file() else None
        if got != lock_sha:
            self.add("venv", marker, "failed",
                     f"venv was not completely installed from this runtime.lock (marker "
                     f"{got or 'missing'}, lock {lock_sha[:12]}): redeploy (invoke deploy)")
            return
        if venv.is_symlink() and venv.resolve().name != lock_sha[:12]:
            self.add("venv", venv, "failed",
                     f"points at {venv.resolve().name}, lock says {lock_sha[:12]}: redeploy")
            return
        pins = parse_lock(text)
        problems, checked = verify_venv(venv, pins)
        if problems:
            self.add("venv", venv, "failed",
                     "venv does not match runtime.lock (tampered or damaged): "
                     + "; ".join(problems[:10]) + ("; ..." if len(problems) > 10 else "")
                     + ": redeploy (invoke deploy) to reinstall from the hashed wheelhouse",
                     problems=problems)
        else:
            self.add("venv", venv, "ok", f"{len(pins)} pins, {checked} files match their RECORD")

    # --- store -------------------------------------------------------------------------------

    def check_store(self) -> bool:
        """True when the store was replaced from a snapshot."""
        from ark_runtime.host import snapshot as snap

        db = self.l.store
        problem = store_problem(db)
        if problem is None:
            self.add("store", db, "ok", "integrity_check ok, schema matches MEMORY_SPEC")
            return False
        if problem == "missing" and not any(snap.list_snapshots(self.l.snapshots)):
            self.add("store", db, "ok", "no store and no snapshots yet: first start, HRM "
                     "creates it")
            return False
        good = snap.newest_verified(self.l.snapshots)
        if good is None:
            self.add("store", db, "failed",
                     f"{problem}; no snapshot in {self.l.snapshots} verifies: cannot restore "
                     "(recover one with ark dr restore BUNDLE, or move the store away to start "
                     "empty, knowingly)")
            return False
        age = round(good.age_seconds)
        detail = (f"{problem}; restored snapshot {good.id}: changes made in the {age} s "
                  f"before it was taken and after are lost")
        if not self.fix("store", db, detail, snapshot=good.id, data_loss_bound_seconds=age):
            return False
        try:
            res = snap.restore(good.id, store=db, root=self.l.snapshots,
                               config_dir=self.l.config)
        except snap.SnapshotError as exc:
            self.findings[-1].status = "failed"
            self.findings[-1].detail = f"{problem}; restore failed: {exc}"
            return False
        self.findings[-1].data["pre_restore"] = res.pre_restore_note
        # Anything root created under the state dir goes to its owner (ark): the snapshot
        # timer, running as ark, must still be able to write and prune there.
        _chown_like(self.l.snapshots, self.l.state)
        if res.pre_restore is not None:
            _chown_tree_like(res.pre_restore.path, self.l.state)
        if (self.l.store.parent / "damaged").is_dir():
            _chown_tree_like(self.l.store.parent / "damaged", self.l.state)
        again = store_problem(db)
        if again is not None:
            self.findings[-1].status = "failed"
            self.findings[-1].detail = f"restored snapshot {good.id} but: {again}"
            return False
        return True

    # --- boot state --------------------------------------------------------------------------

    def check_boot_state(self, restored: bool) -> None:
        from ark_runtime.host import bootstate
        from ark_runtime.host.snapshot import newest_verified

        try:
            payload = bootstate.load_boot_state(self.l.state)
        except bootstate.BootStateError as exc:
            payload, why = None, str(exc)
        else:
            why = ""
        if payload is not None and not restored:
            self.add("boot_state", self.l.state / bootstate.FILENAME, "ok",
                     f"checksum ok; last clean shutdown {payload.get('last_clean_shutdown_at')}")
            return
        if payload is not None:
            why = "store was restored from a snapshot"
        target = self.l.state / bootstate.FILENAME
        if not self.fix("boot_state", target, f"{why}: rewritten from current facts"):
            return
        newest = newest_verified(self.l.snapshots)
        bootstate.write_boot_state(
            self.l.state,
            snapshot_id=newest.id if newest else None,
            # Keep a known clean shutdown time only when the old file was trustworthy.
            last_clean_shutdown_at=(payload or {}).get("last_clean_shutdown_at"),
            extra={"rewritten_by_heal_at": _now(), "rewrite_reason": why},
        )
        _chown_like(target, self.l.state)


# --- helpers ---------------------------------------------------------------------------------


def _name(uid: int, gid: int) -> str:
    try:
        u = pwd.getpwuid(uid).pw_name
    except KeyError:
        u = str(uid)
    try:
        g = grp.getgrgid(gid).gr_name
    except KeyError:
        g = str(gid)
    return f"{u}:{g}"


def _gid(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return 0


def _chown_like(path: Path, ref: Path) -> None:
    """Files heal (root) creates in ark's directories must belong to ark, or ark cannot
    replace or prune them later."""
    if os.geteuid() != 0 or not path.exists():
        return
    st = ref.stat()
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)


def _chown_tree_like(top: Path, ref: Path) -> None:
    _chown_like(top, ref)
    for p in top.rglob("*"):
        _chown_like(p, ref)


def store_problem(db: Path) -> str | None:
    """Why the store cannot be used as it is, or None. Read-only: heal runs as root and must
    not create a root-owned -wal/-shm that HRM (user ark) then cannot open."""
    from ark_runtime.store import MemoryStore, load_spec

    if not db.exists():
        return "missing"
    sidecars_before = {s for s in ("-wal", "-shm") if Path(f"{db}{s}").exists()}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            con.row_factory = sqlite3.Row
            rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
            if rows != ["ok"]:
                return "integrity_check failed: " + "; ".join(rows[:5])
            # The store's own schema comparison, on this read-only connection.
            shim = SimpleNamespace(_db=con, spec=load_spec())
            schema = MemoryStore.verify_schema(shim)  # type: ignore[arg-type]
            if schema:
                return "schema does not match MEMORY_SPEC: " + "; ".join(schema[:5])
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"not a usable SQLite database: {exc}"
    finally:
        for s in ("-wal", "-shm"):
            if s not in sidecars_before:
                _chown_like(Path(f"{db}{s}"), db)
    return None


_NAME_NORM = re.compile(r"[-_.]+")


def _norm(name: str) -> str:
    return _NAME_NORM.sub("-", name).lower()


def parse_lock(text: str) -> dict[str, str]:
    """{normalized name: version} from a pip-compile requirements file with hashes."""
    pins: dict[str, str] = {}
    logical = text.replace("\\\n", " ")
    for line in logical.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = line.split()[0].split(";")[0]
        name, sep, version = req.partition("==")
        if sep:
            pins[_norm(name.split("[")[0])] = version.strip()
    return pins


def _metadata(dist_info: Path) -> tuple[str, str]:
    name = version = ""
    with (dist_info / "METADATA").open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                break
            if line.startswith("Name:"):
                name = line[5:].strip()
            elif line.startswith("Version:"):
                version = line[8:].strip()
    return name, version


def verify_venv(venv: Path, pins: Mapping[str, str]) -> tuple[list[str], int]:
    """(problems, files checked). Each installed dist must be pinned at its version (pip's
    bootstrap dists excepted), each pin installed, each RECORD file present with its hash."""
    problems: list[str] = []
    checked = 0
    site = sorted(venv.glob("lib/python3*/site-packages"))
    if not site:
        return [f"{venv}: no lib/python3*/site-packages"], 0
    installed: dict[str, str] = {}
    recorded: set[Path] = set()
    for sp in site:
        for dist_info in sorted(sp.glob("*.dist-info")):
            try:
                name, version = _metadata(dist_info)
            except OSError as exc:
                problems.append(f"{dist_info.name}: METADATA unreadable ({exc.strerror})")
                continue
            key = _norm(name)
            installed[key] = version
            want = pins.get(key)
            if want is None and key not in VENV_BOOTSTRAP:
                problems.append(f"{name} {version} is installed but not in runtime.lock")
            elif want is not None and want != version:
                problems.append(f"{name} is {version}, runtime.lock pins {want}")
            p, n = _check_record(sp, dist_info, recorded)
            problems += p
            checked += n
        # A file no RECORD lists was not installed by pip from the lock: a planted .pth runs
        # code at every interpreter start, a planted module or .pyc shadows a real one.
        for dirpath, _dirs, files in os.walk(sp):
            for name in files:
                path = Path(dirpath, name)
                if path.resolve() not in recorded:
                    problems.append(f"{path.relative_to(sp)}: not installed by any dist in "
                                    "runtime.lock (planted?)")
    for key, version in sorted(pins.items()):
        if key not in installed:
            problems.append(f"{key}=={version} is in runtime.lock but not installed")
    return problems, checked


def _check_record(site: Path, dist_info: Path, recorded: set[Path]) -> tuple[list[str], int]:
    record = dist_info / "RECORD"
    if not record.is_file():
        return [f"{dist_info.name}: RECORD is missing"], 0
    problems, n = [], 0
    with record.open(encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh):
            if row:
                recorded.add((site / row[0]).resolve())
            if len(row) < 2 or not row[1]:
                continue  # RECORD itself, and files pip compiled after install (.pyc)
            algo, _, expected = row[1].partition("=")
            target = (site / row[0]).resolve() if ".." in row[0] else site / row[0]
            try:
                h = hashlib.new(algo)
                with target.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            except FileNotFoundError:
                problems.append(f"{row[0]}: missing ({dist_info.name})")
                continue
            except (OSError, ValueError) as exc:
                problems.append(f"{row[0]}: cannot check ({exc})")
                continue
            n += 1
            got = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
            if got != expected:
                problems.append(f"{row[0]}: {algo} differs from RECORD ({dist_info.name})")
    return problems, n


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
        print(json.dumps({"safe": code == EXIT_OK, "exit": code, "dry_run": args.dry_run,
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
