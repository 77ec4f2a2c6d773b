"""REC_03 (host side): the disaster-recovery bundle, `ark dr bundle` and `ark dr restore`.

A bundle is one gzip'd tar (stdlib has no zstd on 3.11; gzip level 1 is the fast end, see
benchmarks/dr_bundle_local.py) holding

  logs/...                  $ARK_LOG_DIR, rotated files included (audit*/governance* too)
  snapshots/<id>/...        the N newest *verified* snapshots (a fresh one is taken first)
  config/HRM_RULESET.yaml   the ruleset as deployed
  config/env/<d>.env.redacted  each env file with every sensitive value replaced by
                            the one mask (ark_runtime/redact.py), unknown variables too:
                            not known safe = secret
  units/...                 /etc/systemd/system/ark* unit files and drop-ins
  redis/dump.rdb            on a Redis host only: an RDB saved (BGSAVE) at bundle time; the
                            manifest's `redis` entry records every stream's length and
                            consumer groups in it (redis_dump.py), or why there is none
  manifest.json             sha256 + size per member, host facts, versions, created_at

Secrets are EXCLUDED, not encrypted: a bundle travels (to the control node, to whoever
investigates, into tickets); an encrypted secret still needs a key managed everywhere the bundle
goes, and the deploy renders the env files again from the inventory's vault anyway. So nothing
in a bundle ever needs protecting beyond what logs need.

Links are never stored as tar links (a unit's enablement symlinks are recorded in the manifest
as text): the restore side then only has to accept regular files and directories.

`ark dr restore BUNDLE` reads the whole archive once and checks every member before writing
anything: relative, normalised names under the known top directories, regular files or
directories only (no links, devices, fifos), no duplicates, and every file's sha256 and size
equal to the manifest (and nothing missing or extra). Only then does it stage, verify the
snapshots, restore the newest one through the normal snapshot restore (pre-restore snapshot
of the current store included), and restore the logs. Env files are not restored.

Snapshots from another host are signed with that host's key: once the bundle's member hashes
hold, the restore re-signs them with this host's key (an operator's explicit, root decision).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ark_runtime.host import layout

MANIFEST = "manifest.json"
TOPS = ("logs", "snapshots", "config", "units", "redis")
DEFAULT_LEVEL = 1
DEFAULT_SNAPSHOTS = 3


class BundleError(RuntimeError):
    """The bundle cannot be made, or an archive is refused; the message says why."""


class BundleUsageError(BundleError):
    """The request itself is wrong (an option or setting): nothing was attempted."""


@dataclass(frozen=True)
class Sources:
    log: Path
    state: Path
    snapshots: Path
    store: Path
    config: Path
    ruleset: Path
    units: Path
    # The config redis-server starts with, on a Redis host; None elsewhere (no Redis to dump).
    redis_conf: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Sources:
        lay = layout.resolve(env)
        # The ark_redis role renders ark.conf on Redis hosts only (and removes it elsewhere).
        redis_dir = lay.prefix / "etc" / "redis"
        redis_conf = redis_dir / "redis.conf" if (redis_dir / "ark.conf").is_file() else None
        return cls(lay.log, lay.state, lay.snapshots, lay.store, lay.config, lay.ruleset,
                   lay.units, redis_conf)

