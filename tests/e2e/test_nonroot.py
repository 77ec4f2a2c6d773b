"""Non-root operators end to end (issue 11): a lab reached as `deploy` with sudo, root SSH
refused, and the fleet commands doing their work through sudo - passwordless, and with a
become password from the inventory (answered over the channel, never on a command line).

The other e2e modules run in this mode too; this one proves what is particular to it.
Needs root and the lab tools; skipped otherwise.
"""

from __future__ import annotations

import functools
import os
import time

import pytest
import yaml

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


@pytest.fixture
def password_inventory(fleet, tmp_path):
    """B's sudo wants deploy's password; a copy of the lab inventory carries it in
    group_vars (as a real fleet would, from a vault)."""
    paths = LabPaths.default()
    on(B, "chpasswd", stdin=f"deploy:{SUDO_PASSWORD}\n")
    sudoers = hostmod.layout(paths, LabHost.parse(B)).root / SUDOERS
    original = sudoers.read_text()
    sudoers.write_text("deploy ALL=(ALL:ALL) ALL\n")  # the host's view, live (overlay)
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text((paths.inventory / "hosts.yml").read_text())
    (inv / "group_vars" / "all.yml").write_text(
        yaml.safe_dump({"ansible_become_password": SUDO_PASSWORD}))
    try:
        yield inv / "hosts.yml"
    finally:
        sudoers.write_text(original)


@pytest.mark.requirement("REC_01")
def test_a_become_password_is_used_but_never_shown(password_inventory, tmp_path):
    assert on(B, "true", check=False).returncode != 0  # sudo -n alone no longer works
    lines: list[str] = []
    outcomes, _ = panic(inventory=str(password_inventory), limit=B, log=lines.append)
    assert outcomes[0].ok and outcomes[0].value.remaining == 0, outcomes
    [host] = inventory_hosts(password_inventory, B)
    records = read_host(host, Filters.parse("", "", "", "1h"))
    assert records, "logs through sudo with the password read nothing"
    # A wrong password fails that host at once, with sudo's refusal and not the password.
    wrong = tmp_path / "wrong"
    (wrong / "group_vars").mkdir(parents=True)
    (wrong / "hosts.yml").write_text(password_inventory.read_text())
    (wrong / "group_vars" / "all.yml").write_text(
        yaml.safe_dump({"ansible_become_password": SUDO_PASSWORD[::-1]}))
    started = time.monotonic()
    [bad] = recover(inventory=str(wrong / "hosts.yml"), limit=B, log=lines.append)
    assert not bad.ok and time.monotonic() - started < 30
    assert all(o.ok for o in recover(inventory=str(password_inventory), limit=B,
                                      log=lines.append))
    shown = "\n".join(lines) + repr(outcomes) + repr(bad) + repr(host)
    assert SUDO_PASSWORD not in shown and SUDO_PASSWORD[::-1] not in shown
    wait_for(lambda: healthy(B), 90, "B serving after recover")


def test_nothing_of_the_password_reached_a_process_list(fleet):
    """ps on the host during the runs above would have shown a command-line secret; the
    shell histories and sudo's own log are the durable trace: neither holds it."""
    out = on(B, "sh", "-c", "'cat /var/log/auth.log /home/deploy/.bash_history "
             "2>/dev/null; journalctl -q --no-pager 2>/dev/null | tail -n 2000'",
             check=False).stdout
    assert "COMMAND=" in out or "sudo" in out  # sudo's log is there to be searched
    assert SUDO_PASSWORD not in out
