"""docs/ROLE_VARIABLES.md is generated from the roles (`invoke role-vars`) and kept current:
every variable each role's argument_specs declares, with the default the role uses."""

from __future__ import annotations

from pathlib import Path

import yaml

from ark_ops.role_vars import OUT, ROLES, render


def test_the_table_is_current():
    assert OUT.read_text() == render(), "docs/ROLE_VARIABLES.md is stale: run invoke role-vars"


def test_every_declared_variable_has_a_row_with_its_default():
    text = OUT.read_text()
    for specs_file in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        role = specs_file.parent.parent
        defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
        for spec in yaml.safe_load(specs_file.read_text())["argument_specs"].values():
            for name in spec.get("options") or {}:
                rows = [r for r in text.splitlines() if r.startswith(f"| `{name}` |")]
                assert rows, name
                value = defaults.get(name)
                if isinstance(value, int | str) and not isinstance(value, bool) and str(value):
                    cell = f"`{' '.join(str(defaults[name]).split())}`".replace("|", "\\|")
                    assert all(cell in r for r in rows), name


def test_a_changed_default_makes_it_stale(tmp_path: Path):
    import shutil

    roles = tmp_path / "roles"
    shutil.copytree(ROLES / "ark_base", roles / "ark_base")
    before = render(roles)
    defaults = roles / "ark_base" / "defaults" / "main.yml"
    defaults.write_text(defaults.read_text().replace("ark_base_user: ark",
                                                     "ark_base_user: arkd"))
    after = render(roles)
    assert after != before and "| `ark_base_user` | str | `arkd` |" in after
