"""The lab host's SSH operator: root (plain `lab.up`), or a non-root user with sudo.

`lab.up --user deploy` makes the lab look like a real fleet: `deploy` logs in with the
lab key, becomes root through passwordless sudo, and root cannot log in over SSH at all.
Written into the host's root file system before it boots; each file is checked by the
host's own tool (`visudo -cf`, `sshd -t`, run chrooted) before the host can use it, and
removed again when it does not pass.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ark_ops.errors import OpsError
from ark_ops.proc import run

USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SUDOERS = Path("etc/sudoers.d/ark-lab-operator")
SSHD_DROP_IN = Path("etc/ssh/sshd_config.d/ark-lab-no-root.conf")
PENALTY_DROP_IN = Path("etc/ssh/sshd_config.d/ark-lab-control-node.conf")


def check_user_name(user: str) -> str:
    if not USER_NAME.match(user or ""):
        raise OpsError(f"--user {user!r} is not a user name (lowercase letters, digits, - _)")
    return user


def _ids(root: Path, user: str) -> tuple[int, int] | None:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    return None


def _authorize(root: Path, home: Path, uid: int, gid: int, key: str) -> None:
    ssh_dir = root / home.relative_to("/") / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(key)
    keys.chmod(0o600)
    for path in (ssh_dir.parent, ssh_dir, keys):
        os.chown(path, uid, gid)


def _checked(root: Path, relative: Path, text: str, mode: int, check: list[str]) -> None:
    """Write the file, then let the host's own tool judge it; a bad file never stays."""
    target = root / relative
    target.write_text(text)
    target.chmod(mode)
    result = run(["chroot", str(root), *check], check=False)
    if result.returncode != 0:
        target.unlink()
        raise OpsError(f"/{relative} was refused by `{' '.join(check)}` on the lab host: "
                       + (result.stderr or result.stdout).strip()[-300:])


def make_operator(root: Path, user: str, authorized_key: str) -> None:
    """A non-root `user` with the lab key and passwordless sudo; root SSH login disabled."""
    check_user_name(user)
    if user == "root":
        raise OpsError("make_operator is for non-root users; root is the plain lab")
    if _ids(root, user) is None:
        run(["useradd", "--root", str(root), "--create-home", "--user-group",
             "--shell", "/bin/bash", user])
    uid, gid = _ids(root, user)  # type: ignore[misc]
    _authorize(root, Path("/home") / user, uid, gid, authorized_key)
    _checked(root, SUDOERS, f"{user} ALL=(ALL:ALL) NOPASSWD: ALL\n", 0o440,
             ["visudo", "-cf", f"/{SUDOERS}"])
    # sshd -t wants its privilege-separation directory; the booted host makes it on /run.
    (root / "run" / "sshd").mkdir(parents=True, exist_ok=True)
    _checked(root, SSHD_DROP_IN, "# lab.up --user: operators log in as themselves\n"
             "PermitRootLogin no\n", 0o644, ["/usr/sbin/sshd", "-t"])
    # Nothing left for root to log in with either.
    (root / "root" / ".ssh" / "authorized_keys").unlink(missing_ok=True)


def exempt_control_node(root: Path, address: str) -> None:
    """OpenSSH 9.8+ (Debian 13's 10.0) refuses a source address for a while after it makes
    connections that fail or close before logging in (PerSourcePenalties): every lab ssh comes
    from the bridge's address, and a trixie host then went "not reachable over ssh" for minutes
    in the middle of a test. The lab's control node is exempt; an older sshd has no penalties
    (and no such option)."""
    sshd = root / "usr" / "sbin" / "sshd"
    if b"persourcepenaltyexemptlist" not in sshd.read_bytes().lower():
        return
    (root / "run" / "sshd").mkdir(parents=True, exist_ok=True)
    _checked(root, PENALTY_DROP_IN, "# lab.up: the control node is never penalised\n"
             f"PerSourcePenaltyExemptList {address}\n", 0o644, ["/usr/sbin/sshd", "-t"])


def make_root_operator(root: Path, authorized_key: str) -> None:
    """The plain lab: root logs in with the lab key (and no operator drop-ins remain)."""
    for leftover in (SUDOERS, SSHD_DROP_IN):
        (root / leftover).unlink(missing_ok=True)
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(authorized_key)
    keys.chmod(0o600)
