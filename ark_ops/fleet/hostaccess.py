"""How the control node reaches a host and becomes root there, from its inventory vars.

One place derives the SSH login (ansible_host/user/port/key, the pinned known_hosts) and the
privilege escalation (ansible_become, ansible_become_user, ansible_become_method,
ansible_become_password) for every fleet command that does not go through ansible-playbook,
so panic, recover, DR, audit, config, logs and trace escalate exactly as a deploy would.

Escalation follows Ansible: `ansible_become` decides; when the inventory does not set it, a
non-root SSH user escalates (every fleet command needs root on the host, as the deploy
playbook does with `become: true`). Only `sudo` is supported. A become password is never put
on a command line: Fabric answers sudo's prompt through a watcher, the ssh-based commands
(logs, trace) write it as the first line of the remote command's stdin.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ark_ops.errors import OpsError
from ark_runtime.redact import MASK

USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SUDO_METHODS = ("sudo", "ansible.builtin.sudo")
PASSWORD_VARS = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass")
# What sudo prints when it wants the password (Fabric's watcher answers exactly this).
PROMPT = "[ark-sudo] password: "
WRONG_PASSWORD = "Sorry, try again."


class InventoryVarError(OpsError):
    """An inventory variable has a value the fleet commands cannot use."""

    exit_code = 78  # EX_CONFIG


def _bad(host: str, var: str, why: str) -> InventoryVarError:
    return InventoryVarError(f"inventory var {var} of host {host}: {why}")


def _boolean(host: str, var: str, value: Any) -> bool:
    from ansible.module_utils.parsing.convert_bool import boolean

    try:
        return boolean(value, strict=True)
    except TypeError:
        raise _bad(host, var, f"{_show(value)} is not a boolean (use true or false)") from None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _given(hostvars: Mapping[str, Any], var: str, default: Any) -> Any:
    """The var's value; the default only when it is unset (an empty value is an error)."""
    value = hostvars.get(var)
    return default if value is None else value


def _user(host: str, var: str, value: Any) -> str:
    text = str(value).strip() if isinstance(value, str | int) else None
    if not text or not USER_NAME.match(text):
        raise _bad(host, var, f"{_show(value)} is not a user name")
    return text


def _port(host: str, value: Any) -> int:
    try:
        port = int(str(value).strip()) if not isinstance(value, bool | float) else None
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise _bad(host, "ansible_port", f"{_show(value)} is not a port number (1-65535)")
    return port


@dataclass(frozen=True)
class Become:
    """sudo to `user`, or nothing when `enabled` is false. The password stays out of repr."""

    enabled: bool = False
    user: str = "root"
    password: str | None = field(default=None, repr=False)

    def wrap(self, command: str, password_on_stdin: bool = False) -> str:
        """`command` (one shell string) run through sudo. Without a password sudo never
        prompts (-n): a host that wants one fails at once with sudo's own sentence."""
        if not self.enabled:
            return command
        if self.password is None:
            flags = "-n"
        elif password_on_stdin:
            flags = "-S -p ''"
        else:
            flags = f"-S -p {shlex.quote(PROMPT)}"
        return f"sudo {flags} -u {self.user} -- sh -c {shlex.quote(command)}"

    def stdin_prefix(self) -> str:
        """What the ssh-based commands write first to the remote stdin."""
        return f"{self.password}\n" if self.enabled and self.password is not None else ""

    def watchers(self) -> list:
        """Fabric/Invoke responders that answer sudo's prompt (none without a password)."""
        if not self.enabled or self.password is None:
            return []
        from invoke import FailingResponder

        return [FailingResponder(pattern=re.escape(PROMPT), response=f"{self.password}\n",
                                 sentinel=WRONG_PASSWORD)]

    def scrub(self, text: str) -> str:
        """`text` with the password masked (errors and logs never carry it)."""
        return text.replace(self.password, MASK) if self.password else text


@dataclass(frozen=True)
class Access:
    address: str
    user: str
    port: int
    become: Become
    key_file: str | None = None
    known_hosts: str | None = None


def known_hosts_from(common_args: str) -> str | None:
    try:
        tokens = shlex.split(common_args or "")
    except ValueError:
        return None
    for token in tokens:
        if token.startswith("UserKnownHostsFile="):
            return token.split("=", 1)[1]
    return None


def become_from_vars(host: str, hostvars: Mapping[str, Any], ssh_user: str) -> Become:
    user = _user(host, "ansible_become_user", _given(hostvars, "ansible_become_user", "root"))
    method = hostvars.get("ansible_become_method", "sudo")
    if method not in SUDO_METHODS:
        raise _bad(host, "ansible_become_method",
                   f"{_show(method)} is not supported: fleet commands escalate with sudo")
    if "ansible_become" in hostvars:
        enabled = _boolean(host, "ansible_become", hostvars["ansible_become"])
    else:
        enabled = ssh_user != user
    password = next((hostvars[v] for v in PASSWORD_VARS if hostvars.get(v) is not None), None)
    if password is not None and (not isinstance(password, str) or "\n" in password):
        var = next(v for v in PASSWORD_VARS if hostvars.get(v) is not None)
        raise _bad(host, var, "must be one line of text")  # never echo the value
    # Logged in as the become user already (root with ansible_become: true): nothing to do.
    return Become(enabled=enabled and ssh_user != user, user=user, password=password)


def access_from_vars(host: str, hostvars: Mapping[str, Any]) -> Access:
    """The login and escalation for one host; a value that cannot be used is an
    InventoryVarError naming the variable and the host (never a password's value)."""
    ssh_user = _user(host, "ansible_user", _given(hostvars, "ansible_user", "root"))
    key = hostvars.get("ansible_ssh_private_key_file") or hostvars.get("ansible_private_key_file")
    address = str(_given(hostvars, "ansible_host", host)).strip()
    if not address or any(c.isspace() for c in address) or address.startswith("-"):
        raise _bad(host, "ansible_host", f"{_show(hostvars.get('ansible_host'))} is not "
                                         "a host name or address")
    return Access(
        address=address, user=ssh_user,
        port=_port(host, hostvars.get("ansible_port", 22)),
        become=become_from_vars(host, hostvars, ssh_user),
        key_file=str(key) if key else None,
        known_hosts=known_hosts_from(str(hostvars.get("ansible_ssh_common_args") or "")),
    )
