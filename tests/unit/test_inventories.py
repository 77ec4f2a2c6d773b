"""Which inventory a command acts on, and one it must refuse: variables Ansible would skip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ark_ops.errors import OpsError
from ark_ops.inventories import VARS_SUFFIXES, resolve_inventory, shadowed_vars_files


def _inventory(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "hosts.yml").write_text("all:\n  hosts:\n    web1: {}\n")
    (root / "group_vars").mkdir(exist_ok=True)
    return root / "hosts.yml"


def _write(vars_path: Path, value: str) -> None:
    """A vars source holding `marker: value`, as a file or as a directory of one file."""
    if vars_path.suffix:
        vars_path.write_text(json.dumps({"marker": value}))
    else:
        vars_path.mkdir()
        (vars_path / "main.yml").write_text(f"marker: {value}\n")


def _ansible_reads(hosts: Path) -> str:
    out = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i",
                          str(hosts), "--host", "web1"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["marker"]


@pytest.mark.parametrize("first,second", [("", ".yml"), (".yml", ".yaml"), ("", ".json")])
def test_the_refusal_names_what_ansible_reads_and_what_it_ignores(tmp_path, first, second):
    hosts = _inventory(tmp_path / "prod")
    for sfx in (first, second):
        _write(hosts.parent / "group_vars" / f"all{sfx}", sfx or "dir")
    # Real Ansible agrees with the pair: it reads the first and skips the second.
    assert _ansible_reads(hosts) == (first or "dir")
    with pytest.raises(OpsError, match=rf"read .*group_vars/all{first} and silently ignore "
                                       rf".*group_vars/all{second}"):
        resolve_inventory(str(hosts))


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["all", "ark", "ark_redis", "web1"]),
                       st.sets(st.sampled_from(VARS_SUFFIXES), min_size=1), min_size=1))
def test_only_a_name_given_twice_is_refused(tmp_path_factory, layout):
    root = tmp_path_factory.mktemp("inv")
    hosts = _inventory(root)
    (root / "host_vars").mkdir()
    for name, suffixes in layout.items():
        kind = "host_vars" if name == "web1" else "group_vars"
        for sfx in suffixes:
            _write(root / kind / f"{name}{sfx}", "x")
    twice = sorted(n for n, sfx in layout.items() if len(sfx) > 1)
    assert sorted(read.name.split(".")[0] for read, _ in shadowed_vars_files(root)) == sorted(
        n for n in twice for _ in range(len(layout[n]) - 1))
    if twice:
        with pytest.raises(OpsError, match="silently ignore"):
            resolve_inventory(str(hosts))
    else:
        assert resolve_inventory(str(hosts)) == hosts.resolve()


def test_a_missing_inventory_is_named(tmp_path):
    with pytest.raises(OpsError, match="nowhere.yml does not exist"):
        resolve_inventory(str(tmp_path / "nowhere.yml"))
