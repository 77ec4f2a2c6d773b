"""DEPLOY_01: the host baseline the ark_baseline role set up still holds on every host.

Read-only. Kernel settings are shared with the machine that runs a container (the lab's
systemd-nspawn hosts): there the live value is that machine's business, so only what the host
itself keeps (its sysctl.d file, its units' limits) is checked, and the skip says why.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.requirement("DEPLOY_01")

# (unit, the group that runs it; None: every ARK host)
LIMIT_UNITS = (("ark-api.service", "ark_api"), ("ark-agent@kyle.service", "ark_agents"),
               ("ark-metrics.service", None), ("redis-server.service", "ark_redis"))
TIME_DAEMONS = ("systemd-timesyncd", "chrony", "chronyd", "ntp", "ntpsec", "openntpd")


@pytest.fixture(scope="module")
def container(host) -> str:
    out = host.run("systemd-detect-virt --container")
    return out.stdout.strip() if out.rc == 0 else ""


@pytest.fixture(scope="module")
def nofile(hostvars) -> int:
    return int(hostvars.get("ark_baseline_nofile", 65536))


def redis_host(hostvars) -> bool:
    return "ark_redis" in hostvars.get("group_names", [])


def test_os_is_debian_12_or_13(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.split(".")[0] in ("12", "13")


def test_python_is_3_11_or_newer_with_venv(host):
    out = host.check_output(
        "python3 -c 'import sys, venv, ensurepip; print(*sys.version_info[:2])'")
    major, minor = map(int, out.split())
    assert (major, minor) >= (3, 11)


@pytest.mark.parametrize("unit,group", LIMIT_UNITS, ids=[u for u, _ in LIMIT_UNITS])
def test_units_start_with_the_open_files_limit(host, hostvars, unit, group, nofile):
    if group and group not in hostvars.get("group_names", []):
        pytest.skip(f"{hostvars['inventory_hostname']} is not in {group}")
    soft = host.check_output(f"systemctl show --property=LimitNOFILESoft --value {unit}")
    assert soft == "infinity" or int(soft) >= nofile, f"{unit} LimitNOFILESoft={soft}"


def open_files(host, pid: str) -> tuple[str, str]:
    line = next(ln for ln in host.file(f"/proc/{pid}/limits").content_string.splitlines()
                if ln.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return soft, hard


@pytest.mark.runs_on("ark_api")
def test_the_running_api_has_the_open_files_limit(host, nofile, container):
    pid = host.check_output("systemctl show --property=MainPID --value ark-api.service")
    assert pid not in ("", "0"), "ark-api.service is not running"
    soft, _ = open_files(host, pid)
    want = nofile
    if container:
        # A container's units cannot exceed the hard limit its machine gave PID 1 (the
        # baseline report says so as a warning); they must still get all of it.
        _, ceiling = open_files(host, "1")
        want = nofile if ceiling == "unlimited" else min(nofile, int(ceiling))
    assert soft == "unlimited" or int(soft) >= want, f"ark-api soft limit {soft}, want {want}"


def test_overcommit_is_kept_for_redis_across_reboots(host, hostvars):
    if not redis_host(hostvars):
        pytest.skip("not a Redis host")
    conf = host.file("/etc/sysctl.d/60-ark-redis.conf")
    assert conf.user == "root" and conf.mode == 0o644
    assert "vm.overcommit_memory = 1" in conf.content_string.splitlines()


def test_overcommit_is_live_on_redis_hosts(host, hostvars, container):
    if not redis_host(hostvars):
        pytest.skip("not a Redis host")
    if container:
        pytest.skip(f"{container} container: the kernel belongs to the machine running it")
    assert host.file("/proc/sys/vm/overcommit_memory").content_string.strip() == "1"


def test_transparent_huge_pages_are_not_always_on_redis_hosts(host, hostvars, container):
    if not redis_host(hostvars):
        pytest.skip("not a Redis host")
    thp = host.file("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.exists:
        return  # a kernel without THP cannot have it on
    mode = next(w.strip("[]") for w in thp.content_string.split() if w.startswith("["))
    if mode == "always" and container:
        pytest.skip(f"{container} container: THP is 'always' on the machine running it")
    assert mode in ("never", "madvise")
    assert host.service("ark-thp.service").is_enabled


def test_the_clock_is_kept(host, container):
    active = [d for d in TIME_DAEMONS if host.run(f"systemctl is-active --quiet {d}").rc == 0]
    synced = host.run("timedatectl show --property=NTPSynchronized --value").stdout.strip()
    if synced == "yes" or active:
        return
    if container:
        pytest.skip(f"{container} container: the clock belongs to the machine running it, "
                    "which reports it unsynchronised")
    pytest.fail(f"clock not synchronised and no time daemon active ({', '.join(TIME_DAEMONS)})")
