"""lab.up / lab.down / lab.status: the lifecycle of the local systemd hosts."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ark_ops.errors import OpsError
from ark_ops.lab import host as hostmod
from ark_ops.lab import inventory, network, operator
from ark_ops.lab.config import HOST_PREFIX, MAX_HOSTS, LabHost, LabPaths
from ark_ops.lab.image import DEFAULT_RELEASE, check_release, ensure_base_image
from ark_ops.lab.preflight import LAB_TOOLS, require_root, require_tools
from ark_ops.lab.ssh import close_master, lab_user, ssh_argv
from ark_ops.proc import run

BOOT_TIMEOUT = 120
OPERATOR_CHECK_TIMEOUT = 180
NSPAWN_EXITED = "nspawn exited"


@dataclass
class HostStatus:
    name: str
    address: str
    running: bool
    system_state: str  # systemctl is-system-running, or why we could not ask

    @property
    def ok(self) -> bool:
        # "degraded (failed units: ...)": the state is its first word, the rest is detail.
        return self.running and self.system_state.split(" ", 1)[0] in ("running", "degraded")


def _preflight(job: str) -> None:
    require_root(job)
    require_tools(LAB_TOOLS)


def _ensure_ssh_key(paths: LabPaths) -> str:
    paths.ssh_key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not paths.ssh_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ark-lab",
             "-f", str(paths.ssh_key)])
    return paths.ssh_key.with_suffix(".pub").read_text()


def existing_hosts(paths: LabPaths) -> list[LabHost]:
    """Hosts that have any trace left: a state dir, a namespace or a process."""
    names = set(network.lab_namespaces())
    hosts_dir = paths.state / "hosts"
    if hosts_dir.is_dir():
        names.update(p.name for p in hosts_dir.iterdir() if p.name.startswith(HOST_PREFIX))
    found = []
    for name in names:
        try:
            found.append(LabHost.parse(name))
        except ValueError:
            continue
    return sorted(found, key=lambda h: h.index)


def host_releases(hosts: int, release: str | Sequence[str] | None = None,
                  current: dict[int, str] | None = None) -> list[str]:
    """One Debian release per host: `trixie` for all, or `bookworm,trixie` host by host.
    Without one, a running host keeps its release (`current`, by index) and a new host
    is bookworm, so growing a mixed lab does not rebuild its trixie hosts."""
    if release is None or release == "":
        current = current or {}
        return [current.get(i, DEFAULT_RELEASE) for i in range(1, hosts + 1)]
    names = [r.strip() for r in release.split(",")] if isinstance(release, str) \
        else [str(r).strip() for r in release]
    for name in names:
        check_release(name)
    if len(names) == 1:
        return names * hosts
    if len(names) != hosts:
        raise OpsError(f"--release names {len(names)} releases for {hosts} host(s): give one "
                       "release for every host, or one per host in host order")
    return names


def up(hosts: int = 1, paths: LabPaths | None = None, log=print,
       topology: str = "all", user: str = "root",
       release: str | Sequence[str] | None = None, replace: bool = False) -> list[HostStatus]:
    """Bring the lab to exactly `hosts` running hosts, reached as `user` (root, or a
    non-root operator with sudo and root login disabled), with the groups laid out as
    `topology` says (ark_ops/lab/inventory.py), each host on its Debian `release`
    (`trixie`, or one per host: `bookworm,trixie`; None keeps each existing host's),
    and write the inventory.

    A lab already up as another SSH user is refused (its hosts were built for that user),
    unless `replace`: then it is taken down first — what the test suite does, so that
    `./ops test` after `./ops deploy` needs no manual step."""
    _preflight("lab.up")
    if not 1 <= hosts <= MAX_HOSTS:
        raise OpsError(f"--hosts must be between 1 and {MAX_HOSTS}, got {hosts}")
    paths = paths or LabPaths.default()
    releases = host_releases(hosts, release, {
        h.index: hostmod.release_of(hostmod.layout(paths, h)) for h in existing_hosts(paths)})
    inventory.placement([LabHost(i) for i in range(1, hosts + 1)], topology)  # fail early
    operator.check_user_name(user)
    running = [h for h in existing_hosts(paths)
               if hostmod.supervisor_pid(hostmod.layout(paths, h))]
    if running and lab_user(paths) != user and replace:
        log(f"the lab is up with SSH user {lab_user(paths)}: taking it down to bring it up "
            f"with --user {user}")
        down(paths, log=log)
        running = []
    if running and lab_user(paths) != user:
        raise OpsError(f"the lab is up with SSH user {lab_user(paths)}: run `invoke lab.down` "
                       f"first to bring it up with --user {user}")
    started = time.monotonic()
    bases = {r: ensure_base_image(paths.cache, log=log, release=r) for r in sorted(set(releases))}
    pubkey = _ensure_ssh_key(paths)
    wanted = [LabHost(i) for i in range(1, hosts + 1)]
    by_host = dict(zip(wanted, releases, strict=True))
    for extra in existing_hosts(paths):
        if extra.index > hosts:
            log(f"removing {extra.name} (lab is now {hosts} host(s))")
            _destroy(paths, extra)
        elif hostmod.release_of(hostmod.layout(paths, extra)) != by_host[extra]:
            # A root is an overlay over one release's image: another release is a new host.
            log(f"recreating {extra.name} on {by_host[extra]}")
            _destroy(paths, extra)
    network.ensure_bridge()
    paths.ssh_user_file.write_text(user + "\n")
    for h in wanted:
        lay = hostmod.layout(paths, h)
        network.ensure_host_network(h)
        hostmod.ensure_root(lay, bases[by_host[h]], pubkey, user, release=by_host[h])
        hostmod.start(lay)
    _write_known_hosts(paths, wanted)
    inventory.write(paths, wanted, topology, user, releases=releases)
    statuses = boot(paths, wanted, log)
    bad = [s for s in statuses if not s.ok]
    if bad:
        detail = "; ".join(f"{s.name}: {s.system_state}" for s in bad)
        tails = "".join(f"\n--- {s.name} console.log ends:\n"
                        + hostmod.console_tail(hostmod.layout(paths, LabHost.parse(s.name)))
                        for s in bad)
        raise OpsError(f"lab host(s) did not boot: {detail}. Console logs are in "
                       f"{paths.state / 'hosts'}/<host>/console.log{tails}")
    if user != "root":
        _check_operator(paths, wanted, user)
    log(f"lab up: {hosts} host(s) ({', '.join(releases)}) in "
        f"{time.monotonic() - started:.1f}s; topology {topology}; "
        f"SSH as {mode_text(user)}; inventory {paths.inventory / 'hosts.yml'}")
    return statuses


def mode_text(user: str) -> str:
    return "root" if user == "root" else f"{user} with sudo (root login disabled)"


def root_login_refused(paths: LabPaths, h: LabHost) -> bool:
    """True when sshd turns root away even with the lab key (and the host is reachable)."""
    argv = ["ssh", "-i", str(paths.ssh_key), "-o", f"UserKnownHostsFile={paths.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
            "-o", "LogLevel=ERROR", f"root@{h.address}", "true"]
    proc = _ssh_answer(h, argv)
    return proc.returncode == 255 and "Permission denied" in proc.stderr


def _ssh_answer(h: LabHost, argv: list[str]) -> subprocess.CompletedProcess:
    """The host's answer to one ssh command, asked again while it does not come. A just-booted
    host's first logins start its user manager; on a busy machine one such login took more
    than 30 s (CI), so one slow answer is waited for, within a generous bound, not failed."""
    deadline = time.monotonic() + OPERATOR_CHECK_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=max(5.0, min(60.0, left)))
        except subprocess.TimeoutExpired:
            proc = None
        unreachable = proc is None or (proc.returncode == 255
                                       and "Permission denied" not in proc.stderr)
        if not unreachable:
            return proc
        if time.monotonic() >= deadline:
            why = "no answer" if proc is None else proc.stderr.strip()[-200:]
            raise OpsError(f"{h.name}: ssh did not answer within {OPERATOR_CHECK_TIMEOUT}s "
                           f"({why})")
        time.sleep(1)


def _check_operator(paths: LabPaths, hosts: list[LabHost], user: str) -> None:
    """The operator becomes root with sudo and nobody logs in as root: checked, not assumed."""
    for h in hosts:
        whoami = _ssh_answer(h, ssh_argv(paths, h, "id", "-un"))
        if whoami.stdout.strip() != "root":
            raise OpsError(f"{h.name}: {user} cannot become root with `sudo -n`: "
                           + (whoami.stderr.strip()[-200:] or whoami.stdout.strip()))
        if not root_login_refused(paths, h):
            raise OpsError(f"{h.name}: root can still log in over SSH (PermitRootLogin no "
                           "did not take effect)")


def _write_known_hosts(paths: LabPaths, hosts: list[LabHost]) -> None:
    lines = []
    for h in hosts:
        keytype, key = hostmod.host_public_key(hostmod.layout(paths, h))
        lines.append(f"{h.address} {keytype} {key}\n")
        lines.append(f"{h.name} {keytype} {key}\n")
    paths.known_hosts.write_text("".join(lines))


def _system_state(paths: LabPaths, h: LabHost, wait: bool) -> str:
    cmd = ["systemctl", "is-system-running"] + (["--wait"] if wait else [])
    try:
        # Never our stdin: ssh sets O_NONBLOCK on the descriptor it inherits, and Ansible,
        # started later in the same process tree, refuses a non-blocking stdin.
        proc = subprocess.run(ssh_argv(paths, h, *cmd, as_root=False), capture_output=True,
                              text=True, stdin=subprocess.DEVNULL,
                              timeout=BOOT_TIMEOUT if wait else 10)
    except subprocess.TimeoutExpired:
        return "unreachable (ssh timed out)"
    if proc.returncode == 255:
        return "unreachable (ssh: " + (proc.stderr.strip().splitlines() or ["?"])[-1] + ")"
    return proc.stdout.strip() or "unknown"


def _wait_one(paths: LabPaths, h: LabHost) -> HostStatus:
    deadline = time.monotonic() + BOOT_TIMEOUT
    state = "unreachable"
    while time.monotonic() < deadline:
        lay = hostmod.layout(paths, h)
        if not hostmod.supervisor_pid(lay):
            return HostStatus(h.name, h.address, False, f"{NSPAWN_EXITED}; see console.log")
        state = _system_state(paths, h, wait=True)
        if not state.startswith("unreachable"):
            break
        time.sleep(0.5)
    if state == "degraded":
        failed = subprocess.run(
            ssh_argv(paths, h, "systemctl", "--failed", "--no-legend", "--plain",
                     as_root=False),
            capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL,
        ).stdout.split()
        state = f"degraded (failed units: {', '.join(u for u in failed if '.' in u)})"
    return HostStatus(h.name, h.address, True, state)


def boot(paths: LabPaths, hosts: list[LabHost], log=print) -> list[HostStatus]:
    """Wait for every started host to boot. A guest whose nspawn exits at once gets one more
    start (seen once in CI on a machine's first lab.up; the host booted on the next try),
    and what its console said is logged, not lost."""
    statuses = wait_until_booted(paths, hosts)
    exited = [h for h, s in zip(hosts, statuses, strict=True)
              if s.system_state.startswith(NSPAWN_EXITED)]
    if not exited:
        return statuses
    for h in exited:
        lay = hostmod.layout(paths, h)
        log(f"{h.name}: nspawn exited while booting; starting it once more. console.log ends:\n"
            + hostmod.console_tail(lay))
        hostmod.start(lay)
    again = {s.name: s for s in wait_until_booted(paths, exited)}
    return [again.get(s.name, s) for s in statuses]


def wait_until_booted(paths: LabPaths, hosts: list[LabHost]) -> list[HostStatus]:
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return list(pool.map(lambda h: _wait_one(paths, h), hosts))


def status(paths: LabPaths | None = None) -> list[HostStatus]:
    paths = paths or LabPaths.default()
    result = []
    for h in existing_hosts(paths):
        running = hostmod.supervisor_pid(hostmod.layout(paths, h)) is not None
        state = _system_state(paths, h, wait=False) if running else "stopped"
        result.append(HostStatus(h.name, h.address, running, state))
    return result


# The host's disk is deleted right after: a clean guest shutdown is only politeness. Two of
# the last full suite's teardowns took 60.4 and 60.8 s, the whole of stop()'s old default,
# i.e. a guest whose shutdown hung until SIGKILL (a 1-host lab stops in about 1.5 s).
DESTROY_GRACE_S = 15


def _destroy(paths: LabPaths, h: LabHost) -> None:
    close_master(paths, h)
    lay = hostmod.layout(paths, h)
    hostmod.stop(lay, timeout=DESTROY_GRACE_S)
    hostmod.unmount(lay.root)
    network.remove_host_network(h)
    shutil.rmtree(lay.dir, ignore_errors=True)


def down(paths: LabPaths | None = None, log=print) -> None:
    """Stop every host and remove every trace: processes, mounts, namespaces, links."""
    _preflight("lab.down")
    paths = paths or LabPaths.default()
    hosts = existing_hosts(paths)
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        list(pool.map(lambda h: _destroy(paths, h), hosts))
    orphans = hostmod.orphaned_guests()  # an earlier lab's, never reaped
    for pid, name in orphans.items():
        log(f"killing an orphaned {name} guest (pid {pid}) an earlier stop left running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10  # SIGKILL lands asynchronously: before the check below
    while orphans and time.monotonic() < deadline and hostmod.orphaned_guests():
        time.sleep(0.1)
    for mount in sorted(hostmod.lab_mounts(paths.state), reverse=True):
        hostmod.unmount(Path(mount))
    network.remove_bridge()
    inventory.remove(paths)
    paths.known_hosts.unlink(missing_ok=True)
    paths.ssh_user_file.unlink(missing_ok=True)
    leftovers = leftover_resources(paths)
    if leftovers:
        raise OpsError("lab.down left resources behind: " + ", ".join(leftovers))
    log(f"lab down: {len(hosts)} host(s) removed")


def leftover_resources(paths: LabPaths) -> list[str]:
    """Anything of the lab's still present on this machine (empty after lab.down)."""
    found = [f"netns {n}" for n in network.lab_namespaces()]
    found += [f"link {n}" for n in network.lab_veths()]
    found += [f"mount {m}" for m in hostmod.lab_mounts(paths.state)]
    found += [f"nspawn pid {p}" for p in hostmod.nspawn_pids()]
    found += [f"orphaned {n} guest pid {p}" for p, n in hostmod.orphaned_guests().items()]
    return found
