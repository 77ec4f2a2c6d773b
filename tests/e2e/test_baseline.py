"""DEPLOY_01 on a real lab host: the deploy's baseline report says what it found and changed;
the compliance checks of the baseline pass; a broken setting is put back and reported as changed.

One lab host, a cold deploy, two re-deploys and a refused one (about 3.5 minutes).
Needs root and the lab.
"""

from __future__ import annotations

import json
import os

import pytest

from ark_ops.deploy import run as deploy_mod
from ark_ops.deploy.playbook import PlaybookFailed
from ark_ops.lab import lab
from ark_ops.lab.config import LabHost, LabPaths
from ark_ops.verify.run import verify
from tests.support.lab_shell import on

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.requirement("DEPLOY_01"),
]
HOST = "ark-lab-1"
SYSCTL_FILE = "/etc/sysctl.d/60-ark-redis.conf"


def findings() -> dict[str, dict]:
    return json.loads((deploy_mod.BASELINE_FINDINGS / f"{HOST}.json").read_text())["checks"]


@pytest.fixture(scope="module")
def deployed():
    lab.up(hosts=1, user="deploy")
    try:
        deploy_mod.deploy(echo=False)
        yield findings(), deploy_mod.BASELINE_REPORT.read_text()
    finally:
        lab.down()


def test_first_deploy_reports_every_check_and_refuses_nothing(deployed):
    checks, report = deployed
    assert {"os", "architecture", "python", "venv", "time sync", "vm.overcommit_memory",
            "transparent huge pages", "open files", "disk /var/lib/ark", "ports",
            "redis reachable", "open-files drop-ins", "open-files ceiling"} <= set(checks)
    assert not [c for c, f in checks.items() if f["status"] == "refused"]
    assert checks["redis reachable"]["status"] == "ok"
    # The lab's hosts are containers: the shared kernel's settings are reported, not changed.
    assert checks["vm.overcommit_memory"]["status"] in ("ok", "warn")
    assert checks["open-files ceiling"]["status"] in ("ok", "warn")
    assert f"| {HOST} | os | Debian 12" in report


def test_the_baseline_compliance_checks_pass(deployed, tmp_path):
    assert verify(keyword="baseline", reports_dir=tmp_path) == 0


def test_a_redeploy_with_nothing_to_change_reports_nothing_changed(deployed):
    result = deploy_mod.deploy(echo=False)
    checks = findings()
    assert not [c for c, f in checks.items() if f["status"] in ("changed", "refused")], checks
    assert result.changed[HOST] == 0, result.recap
    assert f"{HOST}: " in deploy_mod.BASELINE_REPORT.read_text()


def test_a_broken_setting_is_put_back_and_reported_as_changed(deployed):
    broken = on(LabHost(1), f"sed -i 's/= 1$/= 0/' {SYSCTL_FILE} && cat {SYSCTL_FILE}")
    assert "vm.overcommit_memory = 0" in broken.stdout, broken.stderr
    result = deploy_mod.deploy(echo=False)
    checks = findings()
    assert checks["overcommit sysctl.d file"]["status"] == "changed"
    assert [c for c, f in checks.items() if f["status"] == "changed"] == [
        "overcommit sysctl.d file"]
    assert result.changed[HOST] >= 1
    assert "vm.overcommit_memory = 1" in on(LabHost(1), f"cat {SYSCTL_FILE}").stdout


def test_a_host_below_the_baseline_is_refused_before_any_change(deployed):
    # 100 TB wanted for the state tree: no lab host has it. Reset to {} afterwards (Ansible
    # caches group_vars in-process: the file must stay).
    group_vars = LabPaths.default().inventory / "group_vars" / "ark"
    group_vars.mkdir(parents=True, exist_ok=True)
    override = group_vars / "baseline.yml"
    override.write_text("---\nark_baseline_disk_mib: {/var/lib/ark: 100000000}\n")
    try:
        with pytest.raises(PlaybookFailed) as err:
            deploy_mod.deploy(echo=False)
    finally:
        override.write_text("---\n{}\n")
    output = err.value.result.output
    assert (f"{HOST} does not meet the ARK baseline and nothing on it was changed: only "
            in " ".join(output.split()))
    assert "ARK needs 100000000 MiB" in " ".join(output.split())
    assert err.value.result.recap[HOST]["changed"] == 0
    assert findings()["disk /var/lib/ark"]["status"] == "refused"
