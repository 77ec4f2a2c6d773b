"""The cached base images: one minbase Debian root per release, with what the roles need.

Built once with debootstrap into a temporary directory and renamed into place, so
an interrupted build is never mistaken for a good image. The cache key covers the
release and package list: changing either builds a new image beside the old one.
Lab hosts can mix releases (`invoke lab.up --release bookworm,trixie`), each host an
overlay over its release's image.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ark_ops.errors import OpsError

# DEPLOY_01: the Debian releases ARK supports: 12 (bookworm) and 13 (trixie, Debian's stable).
RELEASES = ("bookworm", "trixie")
DEFAULT_RELEASE = "bookworm"
SUITE = DEFAULT_RELEASE  # kept for callers that name the default image's suite
MIRROR = "http://deb.debian.org/debian"
IMAGE_REVISION = 3  # bump when the post-build customisation changes
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "polkitd", "libpam-systemd",  # polkitd needs a logind
    "openssh-server", "openssh-sftp-server", "iproute2", "procps",
    "sudo",  # non-root operators (lab.up --user deploy) escalate through sudo
    "python3", "python3-apt", "python3-venv",
    "redis-server", "redis-tools",
    "redis-sentinel",  # issue #20: the ark_sentinel hosts' failover (roles/ark_redis)
    "logrotate", "sqlite3", "ca-certificates", "curl",
    "prometheus",  # LOG_03: the ark_monitoring role's Prometheus (lab hosts have no network)
    "prometheus-alertmanager",  # LOG_03: alerts routed to receivers (roles/ark_monitoring)
    "restic",  # REC_03: off-host DR bundles (roles/ark_backup)
)
# Units the packages enable that must stay off until a role has configured them.
DISABLED_UNITS = ("redis-server.service", "redis-sentinel.service", "prometheus.service",
                  "prometheus-alertmanager.service")


class ReleaseError(OpsError):
    """--release names a Debian release the lab cannot build."""


def check_release(release: str) -> str:
    if release not in RELEASES:
        raise ReleaseError(f"--release must be one of {', '.join(RELEASES)}, got {release!r}")
    return release


def image_key(release: str = DEFAULT_RELEASE) -> str:
    check_release(release)
    digest = hashlib.sha256(
        f"{release}|{MIRROR}|{IMAGE_REVISION}|{','.join(PACKAGES)}".encode()
    ).hexdigest()
    return f"{release}-{digest[:12]}"


def image_path(cache: Path, release: str = DEFAULT_RELEASE) -> Path:
    return cache / "images" / image_key(release)


def ensure_base_image(cache: Path, log=print, release: str = DEFAULT_RELEASE) -> Path:
    """Return the release's base image, building it first if the cache does not hold it."""
    final = image_path(cache, release)
    if (final / ".ark-lab-image").exists():
        return final
    building = final.with_name(final.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    log(f"building base image {final.name} with debootstrap (a minute or two, cached after)…")
    started = time.monotonic()
    cmd = [
        "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
        release, str(building), MIRROR,
    ]
    with open(final.with_name(final.name + ".log"), "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise OpsError(
            f"debootstrap {release} failed (exit {proc.returncode}); see {out.name}. "
            "Check that the Debian mirror is reachable and there is ~500 MB free."
        )
    _customise(building)
    (building / ".ark-lab-image").write_text(f"{image_key(release)}\n")
    building.rename(final)
    log(f"base image ready in {time.monotonic() - started:.0f}s: {final}")
    return final


def _customise(root: Path) -> None:
    # Host keys are made per host; a shared key would let one lab host impersonate another.
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    # Redis, Prometheus and Alertmanager start only once their role has configured them.
    for unit in DISABLED_UNITS:
        subprocess.run(["systemctl", f"--root={root}", "disable", unit],
                       check=True, capture_output=True)
    # The apt lists and .debs are not needed at run time: keep the image small.
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
    for lst in (root / "var" / "lib" / "apt" / "lists").glob("*_Packages"):
        lst.unlink()


if __name__ == "__main__":  # pragma: no cover - manual use: image.py CACHE [RELEASE]
    print(ensure_base_image(Path(sys.argv[1]),
                            release=sys.argv[2] if len(sys.argv) > 2 else DEFAULT_RELEASE))
