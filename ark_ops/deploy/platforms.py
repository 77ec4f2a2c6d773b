"""Which (Python, architecture) pairs the inventory's hosts need wheels for (DEPLOY_01).

`invoke deploy` asks the hosts for their facts before it builds the wheelhouse, so a host with
an unsupported pair is refused before any change, not halfway through a pip install.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ark_ops.deploy.playbook import ansible_env
from ark_ops.errors import OpsError
from ark_ops.paths import REPO_ROOT

# CPython releases with wheels for every pin in requirements.lock (Debian 12 ships 3.11), and
# the architectures manylinux wheels exist for. The ark_baseline role says the same
# (ark_baseline_min_python, ark_baseline_supported_arches).
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")
SUPPORTED_ARCHES = ("x86_64", "aarch64")
_PYTHON = re.compile(r"^3\.\d{1,2}$")
_ARCH = re.compile(r"^[A-Za-z0-9_]{1,32}$")
# python and platform for the wheels; the rest is what the roles' preflights read.
GATHER_SUBSET = "!all,!min,python,platform,distribution,service_mgr,pkg_mgr"


@dataclass(frozen=True, order=True)
class WheelPlatform:
    python: str  # "3.11"
    arch: str  # "x86_64"

    @property
    def supported(self) -> bool:
        return self.python in SUPPORTED_PYTHONS and self.arch in SUPPORTED_ARCHES

    def __str__(self) -> str:
        return f"Python {self.python} on {self.arch}"


def platform_of(host: str, facts: Mapping) -> WheelPlatform:
    """The pair in one host's setup facts; ValueError names the field when a fact is odd."""
    python = facts.get("ansible_python") if isinstance(facts, Mapping) else None
    version = python.get("version") if isinstance(python, Mapping) else None
    major = version.get("major") if isinstance(version, Mapping) else None
    minor = version.get("minor") if isinstance(version, Mapping) else None
    if not (isinstance(major, int) and isinstance(minor, int)) or isinstance(major, bool) \
            or isinstance(minor, bool):
        raise ValueError(f"{host}: fact ansible_python.version has no integer major/minor "
                         f"(got {version!r:.80})")
    arch = facts.get("ansible_architecture")
    if not isinstance(arch, str) or not _ARCH.match(arch):
        raise ValueError(f"{host}: fact ansible_architecture is not an architecture name "
                         f"(got {arch!r:.80})")
    return WheelPlatform(f"{major}.{minor}", arch)


def required_platforms(by_host: Mapping[str, WheelPlatform]) -> list[WheelPlatform]:
    """The pairs to build, or OpsError naming every host whose pair is unsupported."""
    bad = {host: p for host, p in sorted(by_host.items()) if not p.supported}
    if bad:
        named = "; ".join(f"{host} has {p}" for host, p in bad.items())
        raise OpsError(
            f"refused before any change: {named}. ARK's wheelhouse is built for CPython "
            f"{', '.join(SUPPORTED_PYTHONS)} on {' or '.join(SUPPORTED_ARCHES)}: "
            "give those hosts a supported Python and architecture, or leave them out with "
            "--limit.")
    return sorted(set(by_host.values()))


def read_tree(tree: Path) -> dict[str, Mapping]:
    """`ansible --tree DIR` output (one JSON result per host) -> {host: ansible_facts}.
    Unreachable or failed hosts are left out: the playbook reports them."""
    facts: dict[str, Mapping] = {}
    for path in sorted(tree.iterdir()):
        try:
            res = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise OpsError(f"could not read {path.name}'s facts from ansible ({exc})") from None
        if isinstance(res, dict) and isinstance(res.get("ansible_facts"), Mapping) \
                and not res.get("failed") and not res.get("unreachable"):
            facts[path.name] = res["ansible_facts"]
    return facts


def gather(inventory: Path, limit: str | None) -> dict[str, WheelPlatform]:
    """One `setup` call per host: the python and platform subsets for the wheelhouse, plus
    what the roles' preflights read (ansible.cfg's fact cache hands them to the play)."""
    exe = Path(sys.executable).parent / "ansible"
    with tempfile.TemporaryDirectory(prefix="ark-facts-") as tree:
        cmd = [str(exe), "ark", "-i", str(inventory), "-m", "ansible.builtin.setup",
               "-a", f"gather_subset={GATHER_SUBSET}", "--tree", tree]
        if limit:
            cmd += ["--limit", limit]
        subprocess.run(cmd, cwd=REPO_ROOT, env=ansible_env(one_task=True), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
        found = read_tree(Path(tree))
    platforms = {}
    for host, facts in found.items():
        try:
            platforms[host] = platform_of(host, facts)
        except ValueError as exc:
            raise OpsError(f"refused before any change: {exc}") from None
    return platforms
