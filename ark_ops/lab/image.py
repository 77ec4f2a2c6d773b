"""The cached base image: a minbase Debian root with what the roles need.

Built once with debootstrap into a temporary directory and renamed into place, so
an interrupted build is never mistaken for a good image. The cache key covers the
suite and package list: changing either builds a new image beside the old one.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ark_ops.errors import OpsError

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
IMAGE_REVISION = 2  # bump when the post-build customisation changes
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "polkitd", "libpam-systemd",  # polkitd needs a logind
    "openssh-server", "iproute2", "procps",
    "sudo",  # non-root operators (lab.up --user deploy) escalate through sudo
    "python3", "python3-apt", "python3-venv",
    "redis-server", "redis-tools", "logrotate", "sqlite3", "ca-certificates", "curl",
    "prometheus",  # LOG_03: the ark_monitoring role's Prometheus (lab hosts have no network)
)


def image_key() -> str:
    digest = hashlib.sha256(
        f"{SUITE}|{MIRROR}|{IMAGE_REVISION}|{','.join(PACKAGES)}".encode()
    ).hexdigest()
    return f"{SUITE}-{digest[:12]}"


def image_path(cache: Path) -> Path:
    return cache / "images" / image_key()


def ensure_base_image(cache: Path, log=print) -> Path:
    """Return the base image, building it first if the cache does not hold it."""
    final = image_path(cache)
    if (final / ".ark-lab-image").exists():
        return final
    building = final.with_name(final.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    log(f"building base image {final.name} with debootstrap (about a minute, cached after)…")
    started = time.monotonic()
    cmd = [
        "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
        SUITE, str(building), MIRROR,
    ]
    with open(final.with_name(final.name + ".log"), "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise OpsError(
            f"debootstrap failed (exit {proc.returncode}); see {out.name}. "
            "Check that the Debian mirror is reachable and there is ~400 MB free."
        )
    _customise(building)
    (building / ".ark-lab-image").write_text(f"{image_key()}\n")
    building.rename(final)
    log(f"base image ready in {time.monotonic() - started:.0f}s: {final}")
    return final


def _customise(root: Path) -> None:
    # Host keys are made per host; a shared key would let one lab host impersonate another.
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    # Redis starts only once the role has configured it (bind + requirepass).
    subprocess.run(["systemctl", f"--root={root}", "disable", "redis-server.service"],
                   check=True, capture_output=True)
    # Prometheus runs only where the ark_monitoring role configures it.
    subprocess.run(["systemctl", f"--root={root}", "disable", "prometheus.service"],
                   check=True, capture_output=True)
    # The apt lists and .debs are not needed at run time: keep the image small.
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
    for lst in (root / "var" / "lib" / "apt" / "lists").glob("*_Packages"):
        lst.unlink()


if __name__ == "__main__":  # pragma: no cover - manual use
    print(ensure_base_image(Path(sys.argv[1])))
