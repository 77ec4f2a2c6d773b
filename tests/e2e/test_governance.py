"""Governance end to end on the lab (SEC_03, GOV_01, GOV_02): the Invoke surface records
who/what/result on the control node and the host with one correlation id, a no-change
re-deploy records no config version, the fleet verify catches a host chain whose tail was
cut and whose head file was rewritten to match.

Needs root and the lab tools; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ark_ops.lab import lab
from ark_ops.lab.config import LabPaths
from tests.support import lab_shell

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

REPO = Path(__file__).resolve().parents[2]
HOST = "ark-lab-1"
ARK = "/opt/ark/venv/bin/ark"
OPERATOR = "e2e-operator"


def invoke(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(Path(sys.executable).parent / "invoke"), *args], cwd=REPO,
                          env={**os.environ, "ARK_ACTOR": OPERATOR}, capture_output=True,
                          text=True, timeout=1200)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def on(*cmd: str) -> str:
    return lab_shell.on(HOST, *cmd, check=True).stdout


def host_records(action: str) -> list[dict]:
    return [json.loads(x) for x in on(ARK, "audit", "show", "--json", "--action", action)
            .splitlines() if x.strip()]


def control_records(action: str) -> list[dict]:
    from ark_runtime.host.audit.chain import iter_records

    d = LabPaths.default().inventory / ".state" / "audit"
    return [r for _f, r in iter_records(d) if r["action"] == action]


@pytest.fixture(scope="module")
def deployed():
    lab.up(hosts=1, user="deploy")
    invoke("deploy")
    yield HOST
    lab.down()


@pytest.mark.requirement("SEC_03")
def test_deploy_is_recorded_on_control_and_host_with_one_correlation_id(deployed):
    started, done = control_records("deploy")[-2:]
    assert (started["result"], done["result"]) == ("started", "ok")
    assert done["who"] == OPERATOR and f"{HOST}: ok" in done["detail"]
    host = host_records("deploy")[-1]
    assert host["correlation_id"] == done["correlation_id"]
    assert (host["who"], host["where"], host["result"]) == (OPERATOR, HOST, "ok")


@pytest.mark.requirement("GOV_02")
def test_no_change_redeploy_records_no_new_config_version(deployed):
    before = on(ARK, "config", "list", "--json").splitlines()
    assert before, "the first deploy recorded no config version"
    out = invoke("deploy").stdout
    assert f"{HOST} changed=0" in out
    assert on(ARK, "config", "list", "--json").splitlines() == before


@pytest.mark.requirement("SEC_03")
def test_panic_and_recover_are_recorded_on_both_sides(deployed):
    invoke("panic")
    invoke("recover")
    recover = control_records("recover")[-1]
    assert recover["result"] == "ok"
    # The host's own record of clearing the panic carries the control node's id.
    cleared = host_records("heal.clear_panic")
    assert [r["result"] for r in cleared[-2:]] == ["started", "ok"]
    assert cleared[-1]["correlation_id"] == recover["correlation_id"]
    assert cleared[-1]["who"] == OPERATOR
    merged = [json.loads(x) for x in invoke("audit.show", "--json").stdout.splitlines()]
    stamps = [r["ts"] for r in merged]
    assert stamps == sorted(stamps)
    assert {r["where"] for r in merged} >= {HOST} and any(
        r["where"].startswith("control:") for r in merged)


@pytest.mark.requirement("GOV_02")
def test_compliance_checks_pass_including_rollback(deployed):
    invoke("verify", "--keyword", "audit")


@pytest.mark.requirement("GOV_02")
def test_invoke_config_rollback_after_a_changed_deploy(deployed):
    from ark_ops.deploy.playbook import run_playbook

    timer = "/etc/systemd/system/ark-snapshot.timer"
    before = on("cat", timer)
    base = json.loads(on(ARK, "config", "list", "--json").splitlines()[-1])["version"]
    run_playbook("site.yml", LabPaths.default().inventory / "hosts.yml", echo=False,
                 extra_args=["-e", "ark_runtime_snapshot_interval=23min"])
    assert on("cat", timer) != before
    out = invoke("config.rollback", "--to", str(base)).stdout
    print(f"\nconfig.rollback on one lab host: {out.strip()}")  # the rollback time
    assert f"ROLLED BACK to {base}" in out and on("cat", timer) == before
    diff = invoke("config.diff", str(base), str(base + 1), "--host", HOST).stdout
    assert "+OnActiveSec=23min" in diff and "-OnActiveSec=" in diff
    done = control_records("config.rollback")[-1]
    assert done["result"] == "ok" and host_records("config.rollback")[-1]["result"] == "ok"


@pytest.mark.requirement("REC_03")
def test_dr_bundle_is_signed_and_an_altered_copy_is_refused(deployed, tmp_path):
    invoke("dr-bundle", "--out", str(tmp_path))
    [bundle] = list((tmp_path / HOST).glob("*.tar.gz"))
    sig = bundle.with_name(bundle.name + ".sig")
    assert json.loads(sig.read_text())["statement"]["signer"] == OPERATOR
    altered = tmp_path / "altered.tar.gz"
    altered.write_bytes(bundle.read_bytes() + b"\0")
    altered.with_name(altered.name + ".sig").write_bytes(sig.read_bytes())
    proc = invoke("dr-restore", str(altered), "--host", HOST, ok=False)
    assert proc.returncode == 65 and "not the bundle that was signed" in proc.stderr
    assert control_records("dr-restore")[-1]["result"] == "failed"


@pytest.mark.requirement("GOV_01")
def test_fleet_verify_catches_a_cut_tail_with_a_matching_head(deployed):
    assert "ok" in invoke("audit.verify").stdout
    # An attacker with root on the host drops the newest record and rewrites head.json
    # so the host's own chain looks whole; the control node's kept head still knows.
    on("cd /var/log/ark/audit && head -n -1 audit.log > t && cat t > audit.log"
       " && rm t && tail -n 1 audit.log | python3 -c 'import json,sys; r=json.load(sys.stdin);"
       " print(json.dumps({\"seq\": r[\"seq\"], \"hash\": r[\"hash\"]}))' > head.json")
    assert json.loads(on(ARK, "audit", "verify", "--json"))["ok"]
    proc = invoke("audit.verify", ok=False)
    assert proc.returncode == 1
    assert HOST in proc.stdout and "BROKEN" in proc.stdout
