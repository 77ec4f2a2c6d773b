"""Redis users per component (issue #19 §3, SEC_01), from the pipeline declaration.

    {{ ark_runtime_joey_shards | ark_redis_users }}      -> [kyle, joey, kenny, hrm, ...]
    {{ passwords | ark_redis_aclfile(admin_password, shards, legacy_password) }}
                                                         -> the aclfile's text
    {{ passwords | ark_sentinel_users(admin_password, shards) }}
                                                         -> a Sentinel's `user` lines

The names and each user's rules come from ark_runtime/bus/acl.py; the aclfile holds SHA-256
hashes only. `legacy_password` (empty: none) keeps `default` on with the old shared password
while a host still runs a release from before these users (roles/ark_redis, legacy.yml).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

# ark_runtime is found from the repo (the control node deploys from its checkout).
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from ansible.errors import AnsibleFilterError  # noqa: E402

from ark_runtime.bus import acl  # noqa: E402


def _shards(value: object) -> int:
    try:
        shards = int(str(value))
    except ValueError:
        raise AnsibleFilterError(f"ark_redis_users: the Joey shard count {str(value)[:40]!r} "
                                 "is not a whole number") from None
    if shards < 1:
        raise AnsibleFilterError(f"ark_redis_users: the Joey shard count must be 1 or more, "
                                 f"not {shards}")
    return shards


def _sha256(password: str) -> str:
    return hashlib.sha256(str(password).encode()).hexdigest()


def ark_redis_users(shards: object) -> list[str]:
    return acl.component_names(_shards(shards))


def ark_redis_aclfile(passwords: dict, admin_password: str, shards: object,
                      legacy_password: str = "") -> str:
    n = _shards(shards)
    missing = [u for u in acl.component_names(n) if not passwords.get(u)]
    if missing:  # names only: a message never shows a password
        raise AnsibleFilterError("ark_redis_aclfile: no password for the Redis user(s) "
                                 + ", ".join(missing))
    hashes = {u: _sha256(passwords[u]) for u in acl.component_names(n)}
    hashes |= {u: _sha256(passwords[u]) for u in acl.LINK_USERS if passwords.get(u)}
    hashes["admin"] = _sha256(admin_password)
    return acl.render_acl_file(hashes, n, _sha256(legacy_password) if legacy_password else None)


def ark_sentinel_users(passwords: dict, admin_password: str, shards: object) -> str:
    """A Sentinel's `user` lines (issue #20): the same users and passwords as Redis's."""
    n = _shards(shards)
    missing = [u for u in [*acl.component_names(n), "sentinel"] if not passwords.get(u)]
    if missing:
        raise AnsibleFilterError("ark_sentinel_users: no password for the Redis user(s) "
                                 + ", ".join(missing))
    hashes = {u: _sha256(passwords[u]) for u in [*acl.component_names(n), "sentinel"]}
    return acl.sentinel_users(hashes | {"admin": _sha256(admin_password)}, n)


class FilterModule:
    def filters(self):
        return {"ark_redis_users": ark_redis_users, "ark_redis_aclfile": ark_redis_aclfile,
                "ark_sentinel_users": ark_sentinel_users}
