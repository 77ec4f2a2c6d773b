"""DEPLOY_01: the ark_baseline role's host probe decides ok / fix / warn / refuse per check,
and its validator rejects a rendered file that is wrong before it lands."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ark_ops.paths import REPO_ROOT

pytestmark = pytest.mark.requirement("DEPLOY_01")
FILES = REPO_ROOT / "roles" / "ark_baseline" / "files"
VALIDATE = FILES / "ark-baseline-validate"


def _load():
    spec = importlib.util.spec_from_file_location("ark_baseline_probe",
                                                  FILES / "ark_baseline_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probe = _load()


@pytest.mark.parametrize("text, mode", [
    ("always [madvise] never", "madvise"), ("[always] madvise never", "always"),
    ("always madvise [never]", "never"), ("", "unknown")])
def test_thp_mode_is_the_bracketed_word(text, mode):
    assert probe.thp_mode(text) == mode


def test_a_container_never_changes_the_shared_kernel_even_when_writable():
    got = probe.decide_kernel_setting("vm.overcommit_memory", "0", ["1"], True,
                                      "systemd-nspawn")
    assert got["status"] == "warn" and "machine that runs them" in got["note"]


@pytest.mark.parametrize("found, writable, virt, status", [
    ("1", False, "", "ok"), ("1", False, "docker", "ok"), ("0", True, "", "fix"),
    ("0", False, "", "refuse"), ("2", False, "systemd-nspawn", "warn")])
def test_kernel_setting_decision(found, writable, virt, status):
    got = probe.decide_kernel_setting("vm.overcommit_memory", found, ["1"], writable, virt)
    assert got["status"] == status and got["found"] == found
    if status in ("refuse", "warn"):
        assert "set" in got["note"] and "1" in got["note"]


@pytest.mark.parametrize("synced, daemons, virt, installable, allowed, status", [
    (True, [], "", False, True, "ok"),
    (False, ["chrony"], "", False, True, "ok"),
    (False, [], "systemd-nspawn", True, True, "warn"),
    (False, [], "", True, True, "fix"),
    (False, [], "", True, False, "refuse"),
    (False, [], "", False, True, "refuse"),
])
def test_time_sync_decision(synced, daemons, virt, installable, allowed, status):
    asked = []

    def installable_now():
        asked.append(1)
        return installable

    assert probe.decide_time(synced, daemons, virt, installable_now, allowed)["status"] == status
    # apt is asked only for a real host that is unsynchronised with nothing keeping time.
    assert bool(asked) == (not synced and not daemons and not virt and allowed)


def test_the_kernel_clock_state_is_readable_here():
    assert probe.clock_synchronised() in (True, False)


@given(free=st.integers(0, 10**7), need=st.integers(0, 10**6))
def test_disk_is_refused_exactly_below_the_need_and_says_how_much(free, need):
    got = probe.decide_disk("/var/lib/ark", free, need)
    assert (got["status"] == "refuse") == (free < need)
    if free < need:
        assert f"{free} MiB" in got["note"] and f"{need} MiB" in got["note"]


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(["a.service", "b@.service", "c.service"]),
                       st.one_of(st.from_regex(r"\A[0-9]{1,7}\Z"),
                                 st.sampled_from(["infinity", "unknown", ""])), min_size=1))
def test_nofile_needs_a_fix_when_any_unit_is_below_the_limit(found):
    got = probe.decide_nofile(found, 65536)
    low = [u for u, v in found.items()
           if not (v == "infinity" or (v.isdigit() and int(v) >= 65536))]
    assert (got["status"] == "fix") == bool(low)
    assert all(u in got["found"] for u in low)


def test_probe_reports_every_check_as_json_on_this_machine(tmp_path):
    cfg = ('{"time_sync_fix": true, "redis_host": true, "overcommit": 1, '
           '"thp_allowed": ["never", "madvise"], "units": ["ark-api.service"], '
           f'"nofile": 65536, "disk_mib": {{"{tmp_path}/opt": 1}}}}')
    proc = subprocess.run([sys.executable, str(FILES / "ark_baseline_probe.py"), "--config",
                           cfg], capture_output=True, text=True, check=True)
    checks = json.loads(proc.stdout)["checks"]
    assert set(checks) >= {"venv", "time sync", "vm.overcommit_memory",
                           "transparent huge pages", "open files", f"disk {tmp_path}/opt"}
    assert all(c["status"] in ("ok", "fix", "warn", "refuse") for c in checks.values())


def test_probe_bad_config_is_a_usage_error_naming_the_key():
    proc = subprocess.run([sys.executable, str(FILES / "ark_baseline_probe.py"),
                           "--config", '{"redis_host": false}'], capture_output=True, text=True)
    assert proc.returncode == 64 and "time_sync_fix" in proc.stderr


@pytest.mark.parametrize("kind, text, ok", [
    ("sysctl", "# c\nvm.overcommit_memory = 1\n", True),
    ("sysctl", "vm.no_such_setting = 1\n", False),
    ("sysctl", "vm.overcommit_memory\n", False),
    ("sysctl", "", False),
    ("limits", "[Service]\nLimitNOFILE=65536\n", True),
    ("limits", "[Service]\nLimitNOFILE=infinity\n", True),
    ("limits", "[Service]\nLimitNOFILE=lots\n", False),
    ("limits", "[Unit]\nLimitNOFILE=65536\n", False),
    ("limits", "LimitNOFILE=65536\n", False),
    ("limits", "[Service]\nExecStart=/bin/sh\n", False),
])
def test_validator(tmp_path, kind, text, ok):
    path = tmp_path / "f.conf"
    path.write_text(text)
    proc = subprocess.run([sys.executable, str(VALIDATE), kind, str(path)],
                          capture_output=True, text=True)
    assert (proc.returncode == 0) == ok
    if not ok:
        assert proc.returncode == 65


def test_the_rendered_templates_pass_the_validator(tmp_path):
    for kind, template, value in (("sysctl", "ark-baseline-sysctl.conf.j2", "1"),
                                  ("limits", "ark-baseline-limits.conf.j2", "65536")):
        text = (REPO_ROOT / "roles/ark_baseline/templates" / template).read_text()
        text = text.replace("{{ ansible_managed }}", "managed").replace(
            "{{ ark_baseline_overcommit_memory }}", value).replace("{{ ark_baseline_nofile }}",
                                                                   value)
        path = tmp_path / template
        path.write_text(text)
        assert subprocess.run([sys.executable, str(VALIDATE), kind, str(path)]).returncode == 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_huge_pages_unit_passes_systemd_analyze_and_a_broken_one_does_not(tmp_path):
    text = (REPO_ROOT / "roles/ark_baseline/templates/ark-thp.service.j2").read_text()
    good = tmp_path / "good"
    good.write_text(text.replace("{{ ansible_managed }}", "managed").replace(
        "{{ ark_baseline_thp_allowed[0] }}", "never"))
    bad = tmp_path / "bad"
    bad.write_text(good.read_text().replace("Type=oneshot", "Type=oneshoot"))
    run = [sys.executable, str(VALIDATE), "unit"]
    assert subprocess.run([*run, str(good), "ark-thp.service"]).returncode == 0
    failed = subprocess.run([*run, str(bad), "ark-thp.service"], capture_output=True, text=True)
    assert failed.returncode == 65 and "oneshoot" in failed.stderr


LIMITS = """Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            {soft}                {hard}                files
"""


@pytest.mark.parametrize("hard, want, virt, status", [
    ("20000", 65536, "systemd-nspawn", "warn"), ("20000", 65536, "", "refuse"),
    ("524288", 65536, "", "ok"), ("unlimited", 65536, "", "ok"), ("65536", 65536, "docker", "ok")])
def test_the_open_files_ceiling_of_pid_1_caps_what_units_can_get(hard, want, virt, status):
    ceiling = probe.nofile_ceiling(LIMITS.format(soft="1024", hard=hard))
    assert ceiling == (int(hard) if hard.isdigit() else None)
    got = probe.decide_nofile_ceiling(ceiling, want, virt)
    assert got["status"] == status
    if status != "ok":
        assert hard in got["note"] and str(want) in got["note"]


def test_unreadable_limits_give_no_ceiling():
    assert probe.nofile_ceiling(None) is None and probe.nofile_ceiling("garbage") is None
