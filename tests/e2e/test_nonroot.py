"""Non-root operators end to end (issue 11): a lab reached as `deploy` with sudo, root SSH
refused, and the fleet commands doing their work through sudo - passwordless, and with a
become password kept in Ansible Vault (an encrypted vars file, an inline `!vault` value;
answered over the channel, never on a command line).

The other e2e modules run in this mode too; this one proves what is particular to it.
Needs root and the lab tools; skipped otherwise.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import pytest
import yaml

from ark_ops.deploy import run as deploy_mod
from ark_ops.fleet import vault
from ark_ops.fleet.dr import dr_bundle, dr_restore
from ark_ops.fleet.logs import Filters, read_host
from ark_ops.fleet.panic import panic, recover
from ark_ops.fleet.ssh import inventory_hosts
from ark_ops.lab import host as hostmod
from ark_ops.lab import lab
from ark_ops.lab.config import LabHost, LabPaths
from ark_ops.lab.operator import SUDOERS
from tests.support import lab_shell
from tests.support.lab_shell import deployed_lab, units_active, wait_for
from tests.support.vault_files import encrypt_file, encrypt_string, password_file

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

A, B = "ark-lab-1", "ark-lab-2"
SUDO_PASSWORD = "e2e-" + "Vq7" * 6  # a throwaway for this lab host only
# Every command here is expected to succeed unless the call says check=False.
on = functools.partial(lab_shell.on, check=True)


def quiet(*_a, **_k) -> None:
    pass


def healthy(host: str) -> bool:
    # As deploy itself: also while the password test has sudo -n refused on B.
    return units_active(host, as_root=False)


@pytest.fixture(scope="module")
def fleet():
    with deployed_lab(2) as hosts:
        assert hosts == [A, B]
        yield hosts


@pytest.mark.requirement("INFRA_01")
def test_root_ssh_is_refused_and_deploy_becomes_root_only_through_sudo(fleet):
    paths = LabPaths.default()
    for name in fleet:
        h = LabHost.parse(name)
        assert lab.root_login_refused(paths, h), name
        assert on(name, "id", "-un", as_root=False).stdout.strip() == "deploy"
        assert on(name, "id", "-un").stdout.strip() == "root"  # through sudo -n
        assert "permitrootlogin no" in on(name, "sshd", "-T").stdout
        # One string: ssh joins its arguments and the remote shell parses them again.
        assert on(name, f"stat -c '%a %U' /{SUDOERS}").stdout.split() == ["440", "root"]
    inv = yaml.safe_load((paths.inventory / "hosts.yml").read_text())["all"]["vars"]
    assert (inv["ansible_user"], inv["ansible_become"]) == ("deploy", True)
    # The deploy itself went through sudo: ARK's files belong to root/ark, not to deploy.
    assert on(A, "stat", "-c", "%U", "/etc/ark/env/infrastructure.env").stdout.strip() != \
        "deploy"


@pytest.mark.requirement("REC_01")
def test_panic_as_deploy_with_the_venv_broken_and_redis_down(fleet):
    on(A, "mv /opt/ark/venv/bin/python3 /opt/ark/venv/bin/python3.broken")
    on(A, "systemctl", "stop", "redis-server")
    try:
        outcomes, wall = panic(log=quiet)
        assert all(o.ok and o.value.remaining == 0 for o in outcomes), outcomes
        print(f"panic as deploy, venv broken + redis down on {A}: {wall:.2f}s")
        for name in fleet:
            assert on(name, "pgrep", "-u", "ark", check=False).stdout == "", name
            assert "panic by" in on(name, "cat", "/var/lib/ark/PANIC").stdout
    finally:
        on(A, "mv /opt/ark/venv/bin/python3.broken /opt/ark/venv/bin/python3")
        on(A, "systemctl", "start", "redis-server")
    assert all(o.ok for o in recover(log=quiet))
    for name in fleet:
        wait_for(lambda n=name: healthy(n), 90, f"{name} healthy after recover")


@pytest.mark.requirement("REC_03")
def test_dr_bundle_and_restore_as_deploy_leave_nothing_behind(fleet, tmp_path):
    [out] = dr_bundle(limit=A, out_dir=tmp_path, log=quiet)
    assert out.ok, out.error
    assert out.value.local.stat().st_size == out.value.size > 0
    # Handed over through deploy's own directory, which is gone again.
    assert on(A, "ls", "-A", "/home/deploy", as_root=False).stdout.count(".ark-ops.") == 0
    restored = dr_restore(str(out.value.local), A, log=quiet)
    assert restored.ok, restored.error
    wait_for(lambda: healthy(A), 90, "A serving after the restore")
    assert on(A, "ls", "-A", "/home/deploy", as_root=False).stdout.count(".ark-ops.") == 0


VAULT_PASSWORD = "e2e-vault-" + "Kp3" * 6  # opens this test's vault files only


def _vaulted_inventory(inv: Path, become_password: str, vault_pw: Path, inline: bool) -> Path:
    """A copy of the lab inventory whose become password is in Ansible Vault, as an operator
    keeps it: an encrypted group_vars/ark/vault.yml read through a template, or an inline
    `!vault` value."""
    paths = LabPaths.default()
    gv = inv / "group_vars" / "ark"
    gv.mkdir(parents=True)
    (inv / "hosts.yml").write_text((paths.inventory / "hosts.yml").read_text())
    if inline:
        (gv / "become.yml").write_text(
            encrypt_string("ansible_become_password", become_password, vault_pw))
    else:
        (gv / "vault.yml").write_text(yaml.safe_dump({"vault_sudo_password": become_password}))
        encrypt_file(gv / "vault.yml", vault_pw)
        (gv / "main.yml").write_text('ansible_become_password: "{{ vault_sudo_password }}"\n')
    return inv / "hosts.yml"


@pytest.fixture
def password_inventory(fleet, tmp_path):
    """B's sudo wants deploy's password; a copy of the lab inventory carries it in an
    encrypted vars file, and the commands get the vault password from a file."""
    paths = LabPaths.default()
    on(B, "chpasswd", stdin=f"deploy:{SUDO_PASSWORD}\n")
    sudoers = hostmod.layout(paths, LabHost.parse(B)).root / SUDOERS
    original = sudoers.read_text()
    sudoers.write_text("deploy ALL=(ALL:ALL) ALL\n")  # the host's view, live (overlay)
    vault_pw = password_file(tmp_path / "vault-pass", VAULT_PASSWORD)
    hosts = _vaulted_inventory(tmp_path / "inv", SUDO_PASSWORD, vault_pw, inline=False)
    vault.use(vault.VaultOptions.of(password_files=[str(vault_pw)]))
    try:
        yield hosts
    finally:
        vault.use(vault.VaultOptions())
        sudoers.write_text(original)


@pytest.mark.requirement("REC_01")
def test_a_vaulted_become_password_is_used_but_never_shown(password_inventory, tmp_path):
    assert on(B, "true", check=False).returncode != 0  # sudo -n alone no longer works
    assert SUDO_PASSWORD not in (password_inventory.parent / "group_vars/ark/vault.yml"
                                 ).read_text()
    lines: list[str] = []
    outcomes, _ = panic(inventory=str(password_inventory), limit=B, log=lines.append)
    assert outcomes[0].ok and outcomes[0].value.remaining == 0, outcomes
    [host] = inventory_hosts(password_inventory, B)
    records = read_host(host, Filters.parse("", "", "", "1h"))
    assert records, "logs through sudo with the password read nothing"
    # A wrong password (inline-vaulted this time) fails that host at once, with sudo's
    # refusal and not the password.
    wrong = _vaulted_inventory(tmp_path / "wrong", SUDO_PASSWORD[::-1],
                               tmp_path / "vault-pass", inline=True)
    started = time.monotonic()
    [bad] = recover(inventory=str(wrong), limit=B, log=lines.append)
    assert not bad.ok and time.monotonic() - started < 30
    assert all(o.ok for o in recover(inventory=str(password_inventory), limit=B,
                                      log=lines.append))
    shown = "\n".join(lines) + repr(outcomes) + repr(bad) + repr(host)
    assert SUDO_PASSWORD not in shown and SUDO_PASSWORD[::-1] not in shown
    wait_for(lambda: healthy(B), 90, "B serving after recover")


@pytest.mark.requirement("SEC_01")
def test_a_deploy_opens_the_same_vault_through_ansible_playbook(password_inventory, capsys):
    """ansible-playbook and the deploy's own steps (facts, audit) get the vault too."""
    said: list[str] = []
    result = deploy_mod.deploy(inventory=str(password_inventory), limit=B, echo=False,
                               log=said.append)
    assert any("linear strategy" in line for line in said)  # mitogen cannot answer sudo
    assert result.recap[B]["failed"] == 0 and result.recap[B]["unreachable"] == 0
    assert SUDO_PASSWORD not in capsys.readouterr().out + result.output
    wait_for(lambda: healthy(B), 90, "B serving after the vaulted deploy")


def test_nothing_of_the_password_reached_a_process_list(fleet):
    """ps on the host during the runs above would have shown a command-line secret; the
    shell histories and sudo's own log are the durable trace: neither holds it."""
    out = on(B, "sh", "-c", "'cat /var/log/auth.log /home/deploy/.bash_history "
             "2>/dev/null; journalctl -q --no-pager 2>/dev/null | tail -n 2000'",
             check=False).stdout
    assert "COMMAND=" in out or "sudo" in out  # sudo's log is there to be searched
    assert SUDO_PASSWORD not in out


@pytest.mark.requirement("INFRA_02")
def test_a_deploy_from_another_checkout_is_refused_by_the_hosts_lock(fleet):
    """Another clone's deploy holds B's lock (its own control-node lock is elsewhere): this
    checkout's deploy is refused with 75, naming the holder, before any host changes."""
    from ark_ops.deploy.host_lock import HostLock
    from ark_ops.errors import LockedError

    [host_b] = inventory_hosts(LabPaths.default().inventory / "hosts.yml", B)
    other = HostLock(host_b, "ops@other-laptop:/home/ops/ark-ops pid 4242")
    try:
        other.wait_taken()
        with pytest.raises(LockedError) as refused:
            deploy_mod.deploy(echo=False, log=quiet)
        assert refused.value.exit_code == 75
        assert B in str(refused.value) and "other-laptop" in str(refused.value)
    finally:
        other.release()
    mine = HostLock(host_b, "this test")  # released: free for the next deploy
    mine.wait_taken()
    mine.release()


@pytest.mark.requirement("SEC_03")
def test_decommission_bundles_first_then_leaves_no_ark_behind(fleet, tmp_path):
    """Last in this module: B leaves the fleet through the task. Its DR bundle is on the
    control node first; then no ARK unit, file, user or process is left on it, the control
    node's audit chain has the record, and A still serves."""
    import subprocess
    import sys

    from ark_ops.paths import REPO_ROOT
    from ark_runtime.host.audit.chain import iter_records

    proc = subprocess.run([sys.executable, "-m", "invoke", "decommission", "--limit", B,
                           "--out", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert list((tmp_path / B).glob("*.tar.gz")), "no bundle was fetched before the removal"
    assert "decommissioned" in proc.stdout
    left = on(B, "sh -c 'systemctl list-unit-files --no-legend \"ark*\"; ls -d /opt/ark "
                 "/etc/ark /var/lib/ark /var/log/ark /usr/local/bin/ark 2>/dev/null; "
                 "getent passwd ark ark-metrics ark-api; pgrep -u ark'", check=False).stdout
    assert left.strip() == ""
    audit = LabPaths.default().inventory / ".state" / "audit"
    done = [r for _f, r in iter_records(audit) if r.get("action") == "decommission"]
    assert done and done[-1]["result"] == "ok", done[-1:]
    assert healthy(A)
