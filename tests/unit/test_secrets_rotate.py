"""Issue 22 §3: `invoke secrets.rotate KIND` — the command surface, what it refuses and why,
and the DR signing key rotated end to end through the real task (audited, no key material in
any output). The host kinds' remote halves are tested where they run: test_envfile_set,
test_operators_replace, test_snapshot_keyrotate; on a host in tests/e2e/test_secrets_rotate.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ark_ops.errors import RefusedError
from ark_ops.fleet import vault
from ark_ops.fleet.dr_sign import KEY_NAME, PIN_FILE, PIN_FINGERPRINT, signing_key
from ark_ops.fleet.rotate import KINDS, RotateRefused, parse_kind
from tests.support.vault_files import encrypt_file, password_file

pytestmark = pytest.mark.requirement("SEC_01")

REPO = Path(__file__).resolve().parents[2]
INVOKE = str(REPO / ".venv" / "bin" / "invoke")
VAULT_PASSWORD = "vault-pass-" + "r8" * 8
VAULTED_SECRET = "vaulted-api-secret-" + "k3" * 12


@given(st.text(max_size=60))
def test_any_other_kind_is_refused_naming_the_argument(text: str) -> None:
    if text.strip().lower() in KINDS:
        return
    with pytest.raises(RotateRefused) as err:
        parse_kind(text)
    assert str(err.value).startswith("KIND must be one of session-secret, operators, ")
    assert err.value.exit_code == 64


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_parses(kind: str) -> None:
    assert parse_kind(f"  {kind.upper()} ") == kind


@pytest.mark.parametrize("kind", ["dr-signing-key", "session-secret", "redis"])
def test_limit_is_refused_where_the_secret_is_one_for_all(kind: str) -> None:
    from ark_ops.fleet.rotate import rotate

    with pytest.raises(RotateRefused, match=f"--limit does not apply to {kind}"):
        rotate(kind, inventory="/nonexistent", limit="web1")


def _inventory(tmp_path: Path, extra_vars: str = "") -> Path:
    inv = tmp_path / "inventory" / "prod"
    (inv / "group_vars" / "ark").mkdir(parents=True)
    # One host nothing listens for: the audit's host record fails fast and says so.
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    ark:\n      hosts:\n"
        "        a1: {ansible_host: 127.0.0.1, ansible_port: 1}\n"
        "    ark_api:\n      hosts:\n        a1: {}\n"
        "    ark_redis:\n      hosts:\n        a1: {}\n")
    if extra_vars:
        (inv / "group_vars" / "ark" / "main.yml").write_text(extra_vars)
    return inv


def _invoke(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_VAULT")}
    env["ARK_ACTOR"] = "rotation-test@ctl"
    return subprocess.run([INVOKE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("kind", "code", "says"), [
    ("redis", 64, "has no Redis passwords (redis_password, redis_password_<user>): deploy"),
    ("snapshot_keys", 64, "KIND must be one of"),
])
def test_the_task_refuses_in_one_sentence(tmp_path: Path, kind: str, code: int,
                                          says: str) -> None:
    proc = _invoke("secrets.rotate", kind, "--inventory", str(_inventory(tmp_path)))
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("error: ") and says in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_redis_passwords_set_in_the_inventory_are_refused_naming_them(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, 'ark_redis_user_passwords: "{{ vault_users }}"\n')
    proc = _invoke("secrets.rotate", "redis", "--inventory", str(inv))
    assert proc.returncode == 64, proc.stderr
    assert "ark_redis_user_passwords is set in the inventory" in proc.stderr
    assert not (inv / ".secrets").exists() or not list((inv / ".secrets").iterdir())


def test_a_vaulted_session_secret_is_refused_naming_the_variable(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, 'ark_runtime_api_secret: "{{ vault_ark_api_secret }}"\n')
    (inv / "group_vars" / "ark" / "vault.yml").write_text(
        f"vault_ark_api_secret: {VAULTED_SECRET}\n")
    pw = password_file(tmp_path / "vault-pass", VAULT_PASSWORD)
    encrypt_file(inv / "group_vars" / "ark" / "vault.yml", pw)
    proc = _invoke("secrets.rotate", "session-secret", "--inventory", str(inv),
                   "--vault-password-file", str(pw))
    assert proc.returncode == 64, proc.stderr
    assert "ark_runtime_api_secret is set in the inventory (from vault_ark_api_secret)" in \
        proc.stderr and "ansible-vault edit" in proc.stderr
    assert VAULTED_SECRET not in proc.stdout + proc.stderr
    assert not (inv / ".secrets" / "api_secret").exists()  # nothing was made


def test_the_vault_check_reads_vaulted_files_with_the_commands_password(tmp_path: Path) -> None:
    from ark_ops.fleet.rotate import refuse_if_inventory_sets_secret

    inv = _inventory(tmp_path, 'ark_runtime_api_secret: "{{ vault_ark_api_secret }}"\n')
    (inv / "group_vars" / "ark" / "vault.yml").write_text(f"vault_x: {VAULTED_SECRET}\n")
    pw = password_file(tmp_path / "vault-pass", VAULT_PASSWORD)
    encrypt_file(inv / "group_vars" / "ark" / "vault.yml", pw)
    vault.use(vault.VaultOptions.of(password_files=[str(pw)]))
    try:
        with pytest.raises(RotateRefused, match="vault_ark_api_secret"):
            refuse_if_inventory_sets_secret(inv / "hosts.yml")
        plain = _inventory(tmp_path / "plain")
        refuse_if_inventory_sets_secret(plain / "hosts.yml")  # .secrets/ holds it: go on
    finally:
        vault.use(vault.VaultOptions())


def test_dr_signing_key_rotation_through_the_task_is_audited_without_key_material(
        tmp_path: Path) -> None:
    inv = _inventory(tmp_path)
    signing_key(inv)
    old_private = (inv / ".secrets" / KEY_NAME).read_text()
    old_fp = yaml.safe_load((inv / PIN_FILE).read_text())[PIN_FINGERPRINT]

    proc = _invoke("secrets.rotate", "dr-signing-key", "--inventory", str(inv))

    assert proc.returncode == 0, proc.stderr
    new_private = (inv / ".secrets" / KEY_NAME).read_text()
    new_fp = yaml.safe_load((inv / PIN_FILE).read_text())[PIN_FINGERPRINT]
    assert new_fp != old_fp and f"{old_fp} -> {new_fp}" in proc.stdout
    records = [json.loads(line) for line in
               (inv / ".state" / "audit" / "audit.log").read_text().splitlines()]
    done = [r for r in records if r["action"] == "secrets.rotate" and r["result"] != "started"]
    assert len(done) == 1 and done[0]["who"] == "rotation-test@ctl"
    assert done[0]["args"]["kind"] == "dr-signing-key"
    assert done[0]["args"]["new_fingerprint"] == new_fp and done[0]["ts"]
    everything = proc.stdout + proc.stderr + (inv / ".state" / "audit" / "audit.log").read_text()
    for private in (old_private, new_private):
        body = "".join(private.splitlines()[1:-1])
        assert body not in everything and "PRIVATE" not in everything


def test_without_the_vault_password_the_refusal_says_how_to_give_it(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, 'ark_runtime_api_secret: "{{ vault_ark_api_secret }}"\n')
    (inv / "group_vars" / "ark" / "vault.yml").write_text(
        f"vault_ark_api_secret: {VAULTED_SECRET}\n")
    encrypt_file(inv / "group_vars" / "ark" / "vault.yml",
                 password_file(tmp_path / "vault-pass", VAULT_PASSWORD))
    proc = _invoke("secrets.rotate", "session-secret", "--inventory", str(inv))
    assert proc.returncode == 78, proc.stderr
    assert "--vault-password-file" in proc.stderr and "Traceback" not in proc.stderr
    assert VAULTED_SECRET not in proc.stdout + proc.stderr


@given(st.one_of(st.text(max_size=30), st.integers(-10, 70000)))
def test_a_redis_hosts_port_is_a_port_or_refused_naming_the_variable(port) -> None:
    from ark_ops.fleet.rotate_redis import redis_target
    from ark_ops.fleet.ssh import FleetHost

    host = FleetHost("r1", "10.0.0.1", vars={"ark_redis_port": port})
    try:
        aclfile, shown = redis_target(host)
    except RefusedError as err:
        assert str(err).startswith("r1: ark_redis_port ") and err.exit_code == 64
        return
    assert 1 <= int(shown) <= 65535 and aclfile == "/etc/redis/ark-users.acl"


def test_only_hashes_reach_a_redis_host(tmp_path: Path) -> None:
    from ark_ops.fleet.rotate_redis import current_passwords, hash_map, new_password

    secrets_dir = tmp_path / ".secrets"
    secrets_dir.mkdir()
    for name in ("redis_password", "redis_password_kyle", "redis_password_joey-1",
                 "redis_password_replication", "redis_password_sentinel"):
        (secrets_dir / name).write_text(new_password() + "\n")
    old = current_passwords(secrets_dir)
    # Issue #20's link users are not rolled here (masterauth and the Sentinels hold theirs).
    assert sorted(old) == ["admin", "joey-1", "kyle"]
    new = {u: new_password() for u in old}
    text = hash_map(old, new).decode()
    assert [line.split()[0] for line in text.splitlines()] == ["admin", "joey-1", "kyle"]
    assert all(len(h) == 64 for line in text.splitlines() for h in line.split()[1:])
    assert not any(v in text for v in [*old.values(), *new.values()])
    assert all(len(v) == 40 and v.isalnum() for v in new.values())
