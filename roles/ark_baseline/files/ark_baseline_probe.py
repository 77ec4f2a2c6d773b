#!/usr/bin/env python3
"""DEPLOY_01: read a host's baseline in one pass and say, per check, what to do.

    python3 ark_baseline_probe.py --config '<json>'      (the ark_baseline role runs this)

The role copies this one file to the host (ansible.builtin.script) before anything changes, so
it MUST stay standalone: standard library only. It only reads; the role makes the changes.
One script instead of a task per reading keeps a re-deploy fast.

Each check comes back as {"found": ..., "status": ..., "note": ...} where status is
  ok      the host already meets the baseline
  fix     the role can safely make it so (it then reports "changed")
  warn    it cannot be fixed from this host, and ARK still runs (the note says why)
  refuse  ARK must not be deployed here until the operator acts (the note says what to do)

Containers (the lab's systemd-nspawn hosts) share the kernel, its clock and its sysctls with the
machine that runs them, and often see /proc/sys and /sys read-only: those settings belong to that
machine (a write from inside would change it for every container on it), so a container
reports them as "warn" with the reason instead of fixing them.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable

EXIT_USAGE = 64  # ExitCode.USAGE (ark_runtime/exitcodes.py; restated: this file runs alone)
STA_UNSYNC = 0x0040  # <linux/timex.h>: the kernel clock is not synchronised
TIME_ERROR = 5  # adjtimex() return value: clock not synchronised
TIME_DAEMONS = ("systemd-timesyncd", "chrony", "chronyd", "ntp", "ntpsec", "openntpd")
MIB = 1024 * 1024


class Timex(ctypes.Structure):
    """struct timex from <sys/timex.h> (only the leading fields are read)."""

    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long), ("tick", ctypes.c_long), ("rest", ctypes.c_long * 20),
    ]


def run(argv: list[str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return proc.returncode, proc.stdout.strip()


def result(found, status: str, note: str = "") -> dict:
    return {"found": str(found), "status": status, "note": note}


def container() -> str:
    """The container manager's name ("systemd-nspawn", "docker", ...) or "" on a VM/metal."""
    rc, out = run(["systemd-detect-virt", "--container"])
    return out if rc == 0 and out != "none" else ""


def apt_candidate(package: str) -> bool:
    rc, out = run(["apt-cache", "policy", package])
    return rc == 0 and "Candidate:" in out and "Candidate: (none)" not in out


def clock_synchronised() -> bool:
    """What timedatectl's NTPSynchronized reads: the kernel's own view, via adjtimex()."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    tx = Timex()
    state = libc.adjtimex(ctypes.byref(tx))
    return state not in (-1, TIME_ERROR) and not tx.status & STA_UNSYNC


def active_time_daemons() -> list[str]:
    active = []
    for name in TIME_DAEMONS:
        rc, _ = run(["systemctl", "is-active", "--quiet", name + ".service"])
        if rc == 0:
            active.append(name)
    return active


def decide_time(synced: bool, daemons: list[str], virt: str,
                timesyncd_installable: Callable[[], bool], fix_allowed: bool) -> dict:
    """timesyncd_installable is asked only when it matters (apt-cache costs a second)."""
    if synced:
        return result("synchronised" + (f" ({', '.join(daemons)})" if daemons else ""), "ok")
    if daemons:
        return result(f"not yet synchronised, {', '.join(daemons)} active", "ok",
                      "a time daemon is running; it will converge")
    if virt:
        return result("unsynchronised (container)", "warn",
                      f"{virt} containers use the clock of the machine that runs them and "
                      "cannot set it: enable NTP on that machine")
    if fix_allowed and timesyncd_installable():
        return result("unsynchronised, no time daemon", "fix", "installs systemd-timesyncd")
    return result("unsynchronised, no time daemon", "refuse",
                  "the clock is not synchronised and no time daemon is active"
                  + (" or installable" if fix_allowed else "")
                  + ": install and enable chrony or systemd-timesyncd")


def decide_kernel_setting(label: str, found: str, acceptable: list[str], writable: bool,
                          virt: str) -> dict:
    """A sysctl or sysfs setting Redis wants (overcommit, transparent huge pages)."""
    if found in acceptable:
        return result(found, "ok")
    if virt:
        # Even where writable, a container's write would change the whole machine's kernel.
        return result(found, "warn", f"{virt} containers share the kernel of the machine "
                      f"that runs them: set {label} to {acceptable[0]} there")
    if writable:
        return result(found, "fix", f"sets {label} to {acceptable[0]}")
    return result(found, "refuse", f"{label} is {found} and read-only here: set it to "
                  f"{acceptable[0]} (kernel command line or sysctl.d)")


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return None


def check_overcommit(want: str, virt: str) -> dict:
    path = "/proc/sys/vm/overcommit_memory"
    found = read_text(path)
    if found is None:
        return result("unreadable", "refuse", f"{path} cannot be read: mount /proc")
    return decide_kernel_setting("vm.overcommit_memory", found, [want],
                                 os.access(path, os.W_OK), virt)


def thp_mode(text: str) -> str:
    """'always [madvise] never' -> 'madvise' (the bracketed word is the active mode)."""
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return text.strip() or "unknown"


def check_thp(allowed: list[str], virt: str) -> dict:
    path = "/sys/kernel/mm/transparent_hugepage/enabled"
    text = read_text(path)
    if text is None:
        return result("not built into the kernel", "ok")
    return decide_kernel_setting("transparent huge pages", thp_mode(text), allowed,
                                 os.access(path, os.W_OK), virt)


def check_venv() -> dict:
    have = [m for m in ("venv", "ensurepip") if importlib.util.find_spec(m) is not None]
    if len(have) == 2:
        return result("venv and ensurepip", "ok")
    if apt_candidate("python3-venv"):
        return result("missing ensurepip", "fix", "installs python3-venv")
    return result("missing " + ("ensurepip" if have else "venv"), "refuse",
                  "Python's venv module is incomplete and python3-venv is not installable: "
                  "install python3-venv")


def nearest_existing(path: str) -> str:
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return path


def decide_disk(path: str, free_mib: int, need_mib: int) -> dict:
    if free_mib >= need_mib:
        return result(f"{free_mib} MiB free", "ok")
    return result(f"{free_mib} MiB free", "refuse",
                  f"only {free_mib} MiB free for {path} (ARK needs {need_mib} MiB): free space "
                  "there or give it a larger filesystem")


def check_disk(paths: dict[str, int]) -> dict[str, dict]:
    checks = {}
    for path, need in sorted(paths.items()):
        usage = shutil.disk_usage(nearest_existing(path))
        checks[f"disk {path}"] = decide_disk(path, usage.free // MIB, need)
    return checks


def unit_nofile(units: list[str]) -> dict:
    """The soft open-files limit each unit starts with now (a template unit is shown through
    an instance, which systemd loads from the template and its drop-ins)."""
    found = {}
    for unit in units:
        shown = unit.replace("@.", "@probe.") if "@." in unit else unit
        rc, out = run(["systemctl", "show", "--property=LimitNOFILESoft", "--value", shown])
        found[unit] = out if rc == 0 and out else "unknown"
    return found


def decide_nofile(found: dict[str, str], want: int) -> dict:
    low = {u: v for u, v in found.items() if not (v.isdigit() and int(v) >= want)
           and v != "infinity"}
    if not low:
        return result(f"LimitNOFILE >= {want} on {len(found)} units", "ok")
    shown = ", ".join(f"{u}={v}" for u, v in sorted(low.items()))
    return result(shown, "fix", f"sets LimitNOFILE={want} in a drop-in per unit")


def nofile_ceiling(limits_text: str | None) -> int | None:
    """PID 1's hard open-files limit from /proc/1/limits (None: unlimited or unreadable).
    A container without CAP_SYS_RESOURCE cannot give a unit more than this."""
    for line in (limits_text or "").splitlines():
        if line.startswith("Max open files"):
            hard = line.split()[4]
            return int(hard) if hard.isdigit() else None
    return None


def decide_nofile_ceiling(ceiling: int | None, want: int, virt: str) -> dict:
    if ceiling is None or ceiling >= want:
        return result("unlimited" if ceiling is None else str(ceiling), "ok")
    if virt:
        return result(str(ceiling), "warn",
                      f"the {virt} container's open-files limit is {ceiling}, set by the machine "
                      f"that runs it, so units get {ceiling}, not {want}: raise it there")
    return result(str(ceiling), "refuse",
                  f"PID 1's hard open-files limit is {ceiling}, below {want}: raise fs.nr_open "
                  "and systemd's DefaultLimitNOFILE")


def probe(cfg: dict) -> dict:
    virt = container()
    checks = {"venv": check_venv()}
    daemons = active_time_daemons()
    checks["time sync"] = decide_time(clock_synchronised(), daemons, virt,
                                      lambda: apt_candidate("systemd-timesyncd"),
                                      bool(cfg["time_sync_fix"]))
    if cfg.get("redis_host"):
        checks["vm.overcommit_memory"] = check_overcommit(str(cfg["overcommit"]), virt)
        checks["transparent huge pages"] = check_thp(list(cfg["thp_allowed"]), virt)
    checks["open files"] = decide_nofile(unit_nofile(list(cfg["units"])), int(cfg["nofile"]))
    checks["open-files ceiling"] = decide_nofile_ceiling(
        nofile_ceiling(read_text("/proc/1/limits")), int(cfg["nofile"]), virt)
    checks.update(check_disk({p: int(n) for p, n in cfg["disk_mib"].items()}))
    return {"container": virt, "time_daemons": daemons, "checks": checks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True,
                        help="JSON: time_sync_fix, redis_host, overcommit, thp_allowed, units, "
                        "nofile, disk_mib")
    args = parser.parse_args(argv)
    try:
        cfg = json.loads(args.config)
        report = probe(cfg)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"ark_baseline_probe: bad --config ({exc.__class__.__name__}: {exc})",
              file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
