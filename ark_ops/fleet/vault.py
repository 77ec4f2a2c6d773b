"""Ansible Vault secrets for every control-side command: one place, Ansible's own loader.

Operators keep the become password and the group_vars secrets in Ansible Vault (a whole
encrypted `group_vars/ark/vault.yml`, or `!vault` inline values). Every fleet task takes the
options ansible-playbook takes — `--vault-id [label@]source`, `--vault-password-file FILE`,
`--ask-vault-pass` — on top of `ANSIBLE_VAULT_PASSWORD_FILE` / `ANSIBLE_VAULT_IDENTITY_LIST`
and ansible.cfg, and this module turns them into:

* `loader()`: a DataLoader holding the secrets, for the inventory the fleet commands parse
  in this process (ark_ops.fleet.inventory_hosts), loaded through `CLI.setup_vault_secrets`
  exactly as ansible-playbook loads them (a password prompt is asked once per command);
* `child_env()`: the environment that gives the same secrets to every Ansible child
  (ansible-playbook, ansible, ansible-inventory, testinfra) by file *path* in
  ANSIBLE_VAULT_IDENTITY_LIST. A prompted password has no file: it is written to a 0600 file
  in a 0700 directory on tmpfs, named in the list, and removed when the command ends.

A secret never reaches a command line, a log or an error message.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ark_ops.errors import OpsError

IDENTITY_LIST_VAR = "ANSIBLE_VAULT_IDENTITY_LIST"
HINT = ("pass --vault-password-file FILE, --vault-id LABEL@FILE or --ask-vault-pass, or set "
        "ANSIBLE_VAULT_PASSWORD_FILE")


class VaultError(OpsError):
    """The vault secrets are missing or do not open the inventory's encrypted values."""

    exit_code = 78  # EX_CONFIG


@dataclass(frozen=True)
class VaultOptions:
    """The vault options of one command, as ansible-playbook spells them."""

    ids: tuple[str, ...] = ()
    password_files: tuple[str, ...] = ()
    ask: bool = False

    @classmethod
    def of(cls, ids: Iterable[str] | None = None, password_files: Iterable[str] | None = None,
           ask: bool = False) -> VaultOptions:
        ids = tuple(i.strip() for i in ids or () if i and i.strip())
        files = tuple(f.strip() for f in password_files or () if f and f.strip())
        for slug in ids:
            source = slug.split("@", 1)[1] if "@" in slug else slug
            if source in ("prompt", "prompt_ask_vault_pass"):
                continue
            _require_file(source, "--vault-id")
        for path in files:
            _require_file(path, "--vault-password-file")
        return cls(ids, files, bool(ask))


def _require_file(path: str, option: str) -> None:
    if not Path(path).expanduser().is_file():
        raise VaultError(f"{option} {path}: no such file")


@dataclass
class _State:
    options: VaultOptions
    secrets: list | None = None  # [(vault id, VaultSecret)], loaded on first use
    prompted_dir: str | None = None
    prompted_ids: tuple[str, ...] = ()


_state = _State(VaultOptions())


def use(options: VaultOptions) -> None:
    """The vault options of this command (the task wrapper calls it once, first)."""
    _forget_prompted()
    _state.options, _state.secrets, _state.prompted_ids = options, None, ()


def secrets() -> list:
    """[(vault id, secret)] as ansible-playbook would load them; [] when none is configured."""
    if _state.secrets is None:
        from ansible import constants as C  # noqa: N812 - Ansible's own name
        from ansible.cli import CLI
        from ansible.errors import AnsibleError
        from ansible.parsing.dataloader import DataLoader

        opts = _state.options
        try:
            _state.secrets = list(CLI.setup_vault_secrets(
                DataLoader(),
                vault_ids=list(C.DEFAULT_VAULT_IDENTITY_LIST) + list(opts.ids),
                vault_password_files=list(opts.password_files),
                ask_vault_pass=opts.ask, auto_prompt=False))
        except AnsibleError as exc:
            raise VaultError(f"the vault secrets could not be loaded: {first_line(exc)}"
                             ) from None
        except EOFError:
            raise VaultError("--ask-vault-pass needs a terminal to ask on; use "
                             "--vault-password-file instead") from None
    return _state.secrets


def loader():
    """A fresh DataLoader holding this command's vault secrets."""
    from ansible.parsing.dataloader import DataLoader

    data_loader = DataLoader()
    data_loader.set_vault_secrets(secrets())
    return data_loader


def child_env() -> dict[str, str]:
    """Environment entries that hand this command's vault secrets to an Ansible child."""
    opts = _state.options
    if not (opts.ids or opts.password_files or opts.ask):
        return {}  # the child reads ANSIBLE_VAULT_* and ansible.cfg itself, as we did
    slugs = [s for s in opts.ids if not _is_prompt(s)] + list(opts.password_files)
    slugs += _prompted_slugs()
    inherited = [s for s in os.environ.get(IDENTITY_LIST_VAR, "").split(",") if s.strip()]
    return {IDENTITY_LIST_VAR: ",".join(inherited + slugs)}


def _is_prompt(slug: str) -> bool:
    return slug.rsplit("@", 1)[-1] in ("prompt", "prompt_ask_vault_pass")


def _prompted_slugs() -> tuple[str, ...]:
    """The prompted passwords as `label@file` (files made once, removed at exit)."""
    from ansible.parsing.vault import PromptVaultSecret

    if _state.prompted_ids:
        return _state.prompted_ids
    prompted = [(vid, s) for vid, s in secrets() if isinstance(s, PromptVaultSecret)]
    if not prompted:
        return ()
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None  # memory, not disk
    _state.prompted_dir = tempfile.mkdtemp(prefix="ark-vault-", dir=base)  # 0700
    slugs = []
    for n, (vault_id, secret) in enumerate(prompted):
        path = os.path.join(_state.prompted_dir, str(n))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secret.bytes)
        slugs.append(f"{vault_id}@{path}")
    _state.prompted_ids = tuple(slugs)
    return _state.prompted_ids


def _forget_prompted() -> None:
    if _state.prompted_dir:
        shutil.rmtree(_state.prompted_dir, ignore_errors=True)
        _state.prompted_dir = None


atexit.register(_forget_prompted)


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def explain(exc: BaseException, where: str) -> OpsError | None:
    """A VaultError for an Ansible error that means "no or wrong vault secret", else None."""
    text = first_line(exc)
    if "vault" not in text.lower() and "decrypt" not in text.lower():
        return None
    return VaultError(f"{where}: {text}: {HINT}")
