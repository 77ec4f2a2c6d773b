"""Fleet commands open Ansible Vault the way ansible-playbook does (ark_ops.fleet.vault).

Real vault files: the inventories here are encrypted with `ansible-vault encrypt` and
`ansible-vault encrypt_string`, then read through ark_ops.fleet.ssh.inventory_hosts with each of
the usual ways to give the password. The password never reaches a command line: the vault
tools read it from a file, the children get file paths in their environment.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ark_ops.deploy.playbook import ansible_env
from ark_ops.errors import OpsError
from ark_ops.fleet import vault
from ark_ops.fleet.ssh import inventory_hosts
from tests.support.vault_files import encrypt_file, encrypt_string, password_file

pytestmark = pytest.mark.requirement("SEC_01")

VAULT_PASSWORD = "vault-pass-" + "q7" * 8
SUDO_SECRET = "sudo-secret-" + "z4" * 8


@pytest.fixture(autouse=True)
def _no_vault_leftovers(monkeypatch):
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("ANSIBLE_VAULT_IDENTITY_LIST", raising=False)
    vault.use(vault.VaultOptions())
    yield
    vault.use(vault.VaultOptions())


def _password_file(tmp_path: Path, password: str = VAULT_PASSWORD) -> Path:
    return password_file(tmp_path / "vault-pass", password)


def _inventory(tmp_path: Path, *, whole_file: bool, inline: bool) -> Path:
    """An inventory whose become password sits in vault: in an encrypted group_vars/ark/
    vault.yml (whole_file) and/or as an inline `!vault` value (inline)."""
    pw = _password_file(tmp_path)
    gv = tmp_path / "inv" / "group_vars" / "ark"
    gv.mkdir(parents=True)
    if whole_file:
        (gv / "vault.yml").write_text(f"vault_sudo_password: {SUDO_SECRET}\n")
        encrypt_file(gv / "vault.yml", pw)
        assert SUDO_SECRET not in (gv / "vault.yml").read_text()
        (gv / "main.yml").write_text(
            "ansible_become_password: \"{{ vault_sudo_password }}\"\n")
    if inline:
        # The secret goes in on stdin (`--stdin-name`), never on the command line.
        (gv / "inline.yml").write_text(encrypt_string("ansible_become_pass", SUDO_SECRET, pw))
    hosts = tmp_path / "inv" / "hosts.yml"
    hosts.write_text("all:\n  vars: {ansible_user: deploy, ansible_become: true}\n"
                     "  children:\n    ark:\n      hosts:\n"
                     "        a1: {ansible_host: 10.0.0.1}\n")
    return hosts


@pytest.mark.parametrize("whole_file,inline", [(True, False), (False, True)])
def test_without_a_vault_password_the_error_says_how_to_give_one(tmp_path, whole_file, inline):
    hosts = _inventory(tmp_path, whole_file=whole_file, inline=inline)
    with pytest.raises(OpsError) as err:
        inventory_hosts(hosts)
    assert "--vault-password-file" in str(err.value) and "--ask-vault-pass" in str(err.value)
    assert SUDO_SECRET not in str(err.value)
    assert err.value.exit_code == 78


@pytest.mark.parametrize("whole_file,inline", [(True, False), (False, True), (True, True)])
def test_a_password_file_opens_the_vaulted_become_password(tmp_path, whole_file, inline):
    hosts = _inventory(tmp_path, whole_file=whole_file, inline=inline)
    vault.use(vault.VaultOptions.of(password_files=[str(tmp_path / "vault-pass")]))
    [host] = inventory_hosts(hosts)
    assert host.become.enabled and host.become.password == SUDO_SECRET
    assert type(host.become.password) is str  # a plain string, not Ansible's vault object
    assert SUDO_SECRET not in repr(host)


def test_ansible_vault_password_file_in_the_environment_works(tmp_path, monkeypatch):
    hosts = _inventory(tmp_path, whole_file=True, inline=True)
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(tmp_path / "vault-pass"))
    # Ansible reads this setting when its constants load: a fresh process, as an operator's.
    code = ("from pathlib import Path; from ark_ops.fleet.ssh import inventory_hosts; "
            f"[h] = inventory_hosts(Path({str(hosts)!r})); "
            f"print(h.become.password == {SUDO_SECRET!r})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "True", out.stderr[-2000:]


def test_a_labelled_vault_id_opens_it(tmp_path):
    hosts = _inventory(tmp_path, whole_file=True, inline=False)
    vault.use(vault.VaultOptions.of(ids=[f"prod@{tmp_path / 'vault-pass'}"]))
    [host] = inventory_hosts(hosts)
    assert host.become.password == SUDO_SECRET


def test_a_wrong_password_is_refused_without_echoing_anything(tmp_path):
    hosts = _inventory(tmp_path, whole_file=True, inline=False)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    vault.use(vault.VaultOptions.of(password_files=[str(wrong)]))
    with pytest.raises(OpsError) as err:
        inventory_hosts(hosts)
    assert "not-the-password" not in str(err.value) and SUDO_SECRET not in str(err.value)


def test_a_missing_password_file_is_named(tmp_path):
    with pytest.raises(OpsError, match="--vault-password-file .*nope: no such file"):
        vault.VaultOptions.of(password_files=[str(tmp_path / "nope")])


def test_a_prompted_password_reaches_ansible_children_by_path_only(tmp_path, monkeypatch):
    hosts = _inventory(tmp_path, whole_file=True, inline=True)
    from ansible.parsing.vault import PromptVaultSecret

    # The terminal prompt itself is Ansible's (getpass); answer it as a person would.
    monkeypatch.setattr(PromptVaultSecret, "ask_vault_passwords",
                        lambda self: [VAULT_PASSWORD.encode()])
    monkeypatch.setattr(PromptVaultSecret, "load",
                        lambda self: setattr(self, "_bytes", VAULT_PASSWORD.encode()))
    vault.use(vault.VaultOptions.of(ask=True))
    [host] = inventory_hosts(hosts)
    assert host.become.password == SUDO_SECRET
    env = ansible_env(one_task=True)
    listed = env["ANSIBLE_VAULT_IDENTITY_LIST"]
    assert VAULT_PASSWORD not in listed and "@" in listed
    path = Path(listed.split("@", 1)[1])
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    # The child (ansible-inventory, as testinfra and verify run it) opens the vault.
    inv = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i",
                          str(hosts), "--host", "a1"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert inv.returncode == 0, inv.stderr[-2000:]
    assert "vault_sudo_password" in inv.stdout
    vault.use(vault.VaultOptions())  # the command ends: the file goes
    assert not path.exists()


def test_password_files_reach_children_as_paths(tmp_path):
    pw = _password_file(tmp_path)
    vault.use(vault.VaultOptions.of(ids=[f"prod@{pw}"], password_files=[str(pw)]))
    env = ansible_env(one_task=True)
    assert env["ANSIBLE_VAULT_IDENTITY_LIST"] == f"prod@{pw},{pw}"
    assert VAULT_PASSWORD not in " ".join(env.values())
