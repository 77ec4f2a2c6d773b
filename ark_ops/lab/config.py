"""Where the lab keeps its state and how its hosts are addressed.

Everything is derived from a host's index (1..N), so `lab.down` and `lab.status`
can find every resource again even when the state directory was lost.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from ark_ops.paths import REPO_ROOT

MAX_HOSTS = 32

BRIDGE = "arklab0"
# A private /24 that only exists on our bridge: the lab has no route anywhere else.
SUBNET = ipaddress.ip_network(os.environ.get("ARK_LAB_SUBNET", "10.213.0.0/24"))
HOST_PREFIX = "ark-lab-"


@dataclass(frozen=True)
class LabPaths:
    state: Path  # per-host overlays, keys, supervisor pids
    cache: Path  # base images, kept between labs (and CI runs on one machine)
    inventory: Path  # generated Ansible inventory (git-ignored)

    @classmethod
    def default(cls) -> LabPaths:
        return cls(
            state=Path(os.environ.get("ARK_LAB_DIR", "/var/lib/ark-lab")),
            cache=Path(os.environ.get("ARK_LAB_CACHE", "/var/cache/ark-lab")),
            inventory=Path(os.environ.get("ARK_LAB_INVENTORY", REPO_ROOT / "inventory" / "lab")),
        )

    @property
    def ssh_key(self) -> Path:
        return self.state / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state / "ssh" / "known_hosts"

    @property
    def ssh_user_file(self) -> Path:
        """Which user the running lab's hosts are reached as (written by lab.up)."""
        return self.state / "ssh_user"

    def host_dir(self, name: str) -> Path:
        return self.state / "hosts" / name


@dataclass(frozen=True)
class LabHost:
    index: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= MAX_HOSTS:
            raise ValueError(f"lab host index must be 1..{MAX_HOSTS}, got {self.index}")

    @property
    def name(self) -> str:
        return f"{HOST_PREFIX}{self.index}"

    @property
    def netns(self) -> str:
        return self.name

    @property
    def veth(self) -> str:
        # Interface names are limited to 15 bytes.
        return f"vl-{self.name}"

    @property
    def address(self) -> str:
        return str(SUBNET.network_address + 10 + self.index)

    @classmethod
    def parse(cls, text: str) -> LabHost:
        """Accept `ark-lab-2`, `2` or the host's address."""
        text = text.strip()
        if text.startswith(HOST_PREFIX):
            text = text[len(HOST_PREFIX):]
        if text.isdigit():
            return cls(int(text))
        for index in range(1, MAX_HOSTS + 1):
            if cls(index).address == text:
                return cls(index)
        raise ValueError(f"unknown lab host {text!r}: use a name like {HOST_PREFIX}1 or its index")


def gateway_address() -> str:
    return str(SUBNET.network_address + 1)
