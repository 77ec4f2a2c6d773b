"""Real Ansible Vault files for tests, made with the `ansible-vault` tool itself.

Secrets go in through files and stdin, never through a command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ANSIBLE_VAULT = str(Path(sys.executable).parent / "ansible-vault")


def _vault_tool(*args: str, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_VAULT")}
    return subprocess.run([ANSIBLE_VAULT, *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=120, check=True).stdout


def password_file(path: Path, password: str) -> Path:
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


def encrypt_file(path: Path, password: Path) -> None:
    """`path` encrypted in place, as `ansible-vault encrypt` leaves an operator's vault.yml."""
    _vault_tool("encrypt", "--vault-password-file", str(password), str(path))


def encrypt_string(name: str, secret: str, password: Path) -> str:
    """`name: !vault |...` YAML for one inline-vaulted value (the secret read from stdin)."""
    return _vault_tool("encrypt_string", "--vault-password-file", str(password),
                       "--stdin-name", name, stdin=secret)
