"""The import contracts (pyproject.toml [tool.importlinter], run by `invoke test`) and the
shape of the two wings: the contracts must name every host module the pipeline may not use,
and each wing keeps its top level small (the rest is filed in packages by operation)."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import ark_ops
import ark_runtime.host

REPO = Path(__file__).resolve().parents[2]
# What the pipeline may import from host/: where things live, nothing that acts.
PIPELINE_MAY_USE = {"ark_runtime.host.layout"}
MAX_TOP_LEVEL_MODULES = 10


def contract(contract_id: str) -> dict:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    [found] = [c for c in config["contracts"] if c["id"] == contract_id]
    return found


def children(package) -> set[str]:
    return {f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)}


def test_the_pipeline_contract_forbids_every_host_module_but_layout() -> None:
    forbidden = set(contract("pipeline-host")["forbidden_modules"])
    assert forbidden == children(ark_runtime.host) - PIPELINE_MAY_USE


def test_every_package_is_checked_for_import_loops() -> None:
    assert set(contract("no-loops")["ancestors"]) == {"ark_runtime", "ark_ops"}


def test_each_wing_keeps_at_most_ten_modules_at_its_top_level() -> None:
    for package in (ark_ops, ark_runtime.host):
        modules = [m.name for m in pkgutil.iter_modules(package.__path__) if not m.ispkg]
        assert len(modules) <= MAX_TOP_LEVEL_MODULES, (package.__name__, sorted(modules))
