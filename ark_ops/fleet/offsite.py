"""REC_03: DR bundles that leave the host, into a restic repository the inventory names.

`invoke offsite.backup` makes a signed DR bundle of every host (ark_ops.dr), then runs
Debian's restic: `backup` (encrypted, deduplicated), `forget --keep-daily/--keep-weekly
--prune` and `check`. `invoke offsite.restore` takes a host's newest bundle back out of the
repository, verifies it against the key pinned in the inventory (ark_ops.dr_sign) and
restores it with dr-restore — from any checkout holding the inventory, the restic password
and the repository's access key, without the rest of `.secrets/`.

The repository (inventory, group `all` or the target host's vars):
  ark_offsite_repository   any restic repository URL; when unset, built from the one host
                           of group `ark_backup_target`: sftp:USER@HOST:PATH
  ark_offsite_user         sftp account on that host (default ark-backup; the
                           ark_backup_target role makes it, sftp only, one key)
  ark_offsite_path         repository path there (default /srv/ark-restic/repo)
  ark_offsite_keep_daily / ark_offsite_keep_weekly   retention (default 7 / 4)
Its credentials live in the inventory's `.secrets/` (the control node's backup domain):
`restic_password` (made on first use, 0600; restic reads it from RESTIC_PASSWORD_FILE, never
from a command line) and `offsite_ed25519`, the sftp key.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ark_ops.errors import OpsError

PASSWORD_FILE = "restic_password"
SSH_KEY_FILE = "offsite_ed25519"
TARGET_GROUP = "ark_backup_target"
TAG = "ark-dr"
DEFAULTS = {"ark_offsite_user": "ark-backup", "ark_offsite_path": "/srv/ark-restic/repo",
            "ark_offsite_keep_daily": 7, "ark_offsite_keep_weekly": 4}
_KNOWN_HOSTS = re.compile(r"UserKnownHostsFile=(\S+)")


class OffsiteError(OpsError):
    """The off-host repository is not configured, not reachable, or restic failed."""


@dataclass(frozen=True)
class Repository:
    url: str
    keep_daily: int
    keep_weekly: int
    secrets_dir: Path
    ssh_command: str | None = None  # restic's sftp.command, for sftp: repositories

    @property
    def password_file(self) -> Path:
        return self.secrets_dir / PASSWORD_FILE

    def env(self) -> dict[str, str]:
        """restic's environment: the password by file, never in argv or in the env."""
        if not self.password_file.is_file():
            raise OffsiteError(f"no restic password at {self.password_file}: copy the escrowed "
                               "password there (0600), or run offsite.backup once to make one")
        return {**os.environ, "RESTIC_REPOSITORY": self.url,
                "RESTIC_PASSWORD_FILE": str(self.password_file),
                "RESTIC_CACHE_DIR": str(self.secrets_dir / "restic-cache")}

    def argv(self, *args: str) -> list[str]:
        opts = ["-o", f"sftp.command={self.ssh_command}"] if self.ssh_command else []
        return ["restic", *opts, *args]


def _positive_int(name: str, value: object) -> int:
    # re, not str.isdigit(): that takes "²" too, which int() then refuses.
    if isinstance(value, bool) or not isinstance(value, int | str) \
            or not re.fullmatch(r"[0-9]{1,6}", str(value)) or int(value) < 1:
        raise OffsiteError(f"{name} must be a whole number of 1 or more, got {value!r:.40}")
    return int(value)


def repository_from_vars(target: dict | None, common: dict, secrets_dir: Path) -> Repository:
    """The repository from inventory vars (target: the ark_backup_target host's vars, or None
    when the group is empty; common: group `all`'s); OffsiteError names the missing field."""
    merged = {**DEFAULTS, **common, **(target or {})}
    keep_daily = _positive_int("ark_offsite_keep_daily", merged["ark_offsite_keep_daily"])
    keep_weekly = _positive_int("ark_offsite_keep_weekly", merged["ark_offsite_keep_weekly"])
    url = merged.get("ark_offsite_repository")
    if url:
        if not isinstance(url, str) or url.startswith("-") or "\n" in url:
            raise OffsiteError(f"ark_offsite_repository is not a restic repository: {url!r:.60}")
        return Repository(url, keep_daily, keep_weekly, secrets_dir)
    if target is None:
        raise OffsiteError(f"no off-host repository: put one host in group {TARGET_GROUP} "
                           "(an sftp target the ark_backup_target role sets up) or set "
                           "ark_offsite_repository in the inventory")
    host = target.get("ansible_host") or target.get("inventory_hostname")
    user, path = merged["ark_offsite_user"], merged["ark_offsite_path"]
    for name, value, pattern in (("ansible_host", host, r"[A-Za-z0-9.:-]{1,253}"),
                                 ("ark_offsite_user", user, r"[a-z_][a-z0-9_-]{0,31}"),
                                 ("ark_offsite_path", path, r"/[A-Za-z0-9._/-]{1,200}")):
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise OffsiteError(f"{name} of the {TARGET_GROUP} host is not usable: {value!r:.60}")
    key = secrets_dir / SSH_KEY_FILE
    ssh = ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
           "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"]
    known = _KNOWN_HOSTS.search(str(merged.get("ansible_ssh_common_args", "")))
    if known:
        ssh += ["-o", f"UserKnownHostsFile={known.group(1)}"]
    port = merged.get("ansible_port")
    if port:
        ssh += ["-p", str(_positive_int("ansible_port", port))]
    ssh += [f"{user}@{host}", "-s", "sftp"]
    return Repository(f"sftp:{user}@{host}:{path}", keep_daily, keep_weekly, secrets_dir,
                      ssh_command=shlex.join(ssh))


def inventory_repository(inventory: Path) -> Repository:
    """Read the repository from an inventory file or directory (Ansible's own loader)."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[str(inventory)])
    variables = VariableManager(loader=loader, inventory=inv)
    targets = inv.get_hosts(TARGET_GROUP) if TARGET_GROUP in inv.groups else []
    if len(targets) > 1:
        raise OffsiteError(f"group {TARGET_GROUP} has {len(targets)} hosts; it names one "
                           "repository host")
    # group_vars/all reach Ansible's vars through a host: any host of the inventory will do.
    anyone = inv.get_hosts("all")
    common = dict(variables.get_vars(host=anyone[0])) if anyone else {}
    target = dict(variables.get_vars(host=targets[0])) if targets else None
    inv_dir = inventory if inventory.is_dir() else inventory.parent
    return repository_from_vars(target, common, inv_dir / ".secrets")


def ensure_password(repo: Repository) -> None:
    """Make the restic password on first use: 0600, random, never printed."""
    repo.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if repo.password_file.exists():
        return
    fd = os.open(repo.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")


def ensure_ssh_key(secrets_dir: Path) -> Path:
    """The dedicated sftp key (the ark_backup_target role authorizes its public half)."""
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets_dir / SSH_KEY_FILE
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ark-offsite",
                        "-f", str(key)], check=True, capture_output=True)
    return key


def _require_restic() -> None:
    if shutil.which("restic") is None:
        raise OffsiteError("restic is not installed on this control node: "
                           "`sudo apt-get install restic` (./ops installs it)")


def restic(repo: Repository, *args: str, timeout: float = 1800, cwd: Path | None = None) -> str:
    _require_restic()
    proc = subprocess.run(repo.argv(*args), env=repo.env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)
    if proc.returncode != 0:
        raise OffsiteError(f"restic {args[0]} failed (exit {proc.returncode}): "
                           + (proc.stderr.strip() or proc.stdout.strip())[-600:])
    return proc.stdout


def initialised(repo: Repository) -> bool:
    proc = subprocess.run(repo.argv("cat", "config"), env=repo.env(), capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    if proc.returncode == 0:
        return True
    if re.search(r"does not exist|unable to open config file|Is there a repository",
                 proc.stderr):
        return False
    raise OffsiteError("restic cannot open the repository: " + proc.stderr.strip()[-600:])


@dataclass
class BackupResult:
    snapshot: str
    files_new: int
    data_added: int
    kept: int
    check: str


def backup(repo: Repository, staging: Path, log=print) -> BackupResult:
    """Back `staging` (one directory of signed bundles per host) up, thin out old snapshots
    and check the repository."""
    ensure_password(repo)
    if not initialised(repo):
        log(f"initialising restic repository {repo.url}")
        restic(repo, "init")
    summary = {}
    for line in _backup_lines(repo, staging):
        doc = json.loads(line)
        if doc.get("message_type") == "summary":
            summary = doc
    if not summary.get("snapshot_id"):
        raise OffsiteError("restic backup wrote no snapshot")
    # Grouped by host and tag, not path: each run stages its bundles in a new directory.
    kept_out = restic(repo, "forget", "--json", "--tag", TAG, "--group-by", "host,tags",
                      "--keep-daily",
                      str(repo.keep_daily), "--keep-weekly", str(repo.keep_weekly), "--prune")
    kept = sum(len(group.get("keep") or []) for group in _json_tail(kept_out))
    check = restic(repo, "check").strip().splitlines()
    return BackupResult(summary["snapshot_id"][:8], summary.get("files_new", 0),
                        summary.get("data_added", 0), kept, (check or ["ok"])[-1])


def _backup_lines(repo: Repository, staging: Path) -> list[str]:
    out = restic(repo, "backup", "--json", "--tag", TAG, "--host", "ark-control", ".",
                 timeout=3600, cwd=staging)
    return [line for line in out.splitlines() if line.startswith("{")]


def _json_tail(text: str) -> list:
    """forget --json's report: the one line that is a JSON list (prune's progress lines
    such as `[0:00] 100.00%` are not)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("[{") or line == "[]":
            try:
                return json.loads(line)
            except ValueError:
                continue
    return []


def fetch_newest_bundle(repo: Repository, host: str, into: Path) -> Path:
    """Restore the newest snapshot's bundles of `host` into `into`; the newest one (with its
    .sig beside it)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", host):
        raise OffsiteError(f"--source must be an inventory host name, got {host!r:.60}")
    restic(repo, "restore", "latest", "--tag", TAG, "--target", str(into),
           "--include", f"/{host}")
    bundles = sorted((p for p in into.rglob(f"{host}/*.tar.gz")),
                     key=lambda p: p.name)
    if not bundles:
        raise OffsiteError(f"the newest snapshot in {repo.url} holds no bundle of {host}")
    return bundles[-1]
