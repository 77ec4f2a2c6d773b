"""The audit ingester's unit as Ansible renders it (trim_blocks on): every directive on its
own line. A block tag at a line's end once ate the newline, and systemd read
`ReadWritePaths=... /var/log/arkProtectHome=yes`, failing the unit with 226/NAMESPACE on
every host (seen on the lab)."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest

REPO = Path(__file__).resolve().parents[2]
ROLE_TEMPLATES = REPO / "roles" / "ark_runtime" / "templates"
# Two directives run together: `...arkProtectHome=yes`.
GLUED = re.compile(r"[a-z0-9/][A-Z][A-Za-z]+=")


def render(**env: str) -> str:
    jenv = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE_TEMPLATES / "systemd"),
                              undefined=jinja2.StrictUndefined, trim_blocks=True)
    jenv.filters["regex_replace"] = lambda s, a, b: re.sub(a, b, s)
    return jenv.get_template("ark-audit-ingest.service.j2").render(
        ansible_managed="managed", ark_runtime_env=env, ark_runtime_log_dir="/var/log/ark",
        ark_runtime_state_dir="/var/lib/ark", ark_runtime_venv_link="/opt/ark/venv",
        ark_runtime_api_user="ark-api")


@pytest.mark.requirement("SEC_03")
@pytest.mark.parametrize("env,paths", [
    ({}, "/var/log/ark"),
    ({"ARK_AUDIT_DIR": "/srv/audit"}, "/var/log/ark /srv/audit"),
])
def test_each_directive_is_on_its_own_line(env, paths):
    lines = render(**env).splitlines()
    directives = [ln for ln in lines if ln and not ln.startswith(("#", "["))]
    assert all("=" in ln for ln in directives)
    glued = [ln for ln in directives if GLUED.search(ln.split("=", 1)[1])]
    assert not glued, glued
    assert f"ReadWritePaths={paths}" in lines
    assert "ProtectHome=yes" in lines


@pytest.mark.requirement("SEC_03")
def test_it_follows_the_journal_and_trusts_only_the_apis_unit_and_user():
    lines = render().splitlines()
    assert ("ExecStart=/opt/ark/venv/bin/ark audit ingest --follow --api-unit ark-api.service "
            "--api-user ark-api") in lines
    assert "Restart=always" in lines and "User=root" in lines
    assert not any("spool" in ln for ln in lines if not ln.startswith("#"))
