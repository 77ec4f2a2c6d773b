"""Lint what operators lint: yamllint and ansible-lint (production profile, offline) are
clean on the repo, and their configuration really refuses what it should.

`invoke test` runs both linters too; here a failure shows their own output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# Resolved: ansible-lint warns when its own bin directory is not on PATH as it sees it.
VENV_BIN = Path(sys.executable).parent.resolve()
GENERATED = {".venv/", "build/", "reports/", "inventory/lab/"}


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "PY_COLORS": "0",
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def yamllint(cwd: Path, *paths: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "yamllint", "--strict", "-f", "parsable", *paths], cwd)


def ansible_lint(cwd: Path) -> subprocess.CompletedProcess:
    return run([str(VENV_BIN / "ansible-lint"), "--nocolor"], cwd)


def test_yamllint_is_clean_on_every_yaml_file():
    proc = yamllint(REPO, ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint_production_profile_is_clean():
    proc = ansible_lint(REPO)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Profile 'production' was required, and it passed" in output, output


def test_lint_configs_are_offline_production_and_skip_generated_paths():
    lint = yaml.safe_load((REPO / ".ansible-lint").read_text())
    assert lint["profile"] == "production"
    assert lint["offline"] is True  # no Galaxy install, no schema or version download
    assert set(lint["exclude_paths"]) >= GENERATED
    assert not lint.get("skip_list") and not lint.get("warn_list")
    ignored = set(yaml.safe_load((REPO / ".yamllint").read_text())["ignore"].split())
    assert ignored >= GENERATED


def make_project(tmp: Path) -> Path:
    """A project with the repo's lint configs and one role that breaks production rules."""
    for name in (".ansible-lint", ".yamllint"):
        shutil.copy(REPO / name, tmp / name)
    tasks = tmp / "roles" / "demo" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(
        "---\n"
        "- shell: systemctl restart demo\n"
        "- name: lower-case name and no mode\n"
        "  ansible.builtin.copy:\n"
        "    content: x\n"
        "    dest: /etc/demo.conf\n"
    )
    return tmp


def test_ansible_lint_refuses_what_the_production_profile_forbids(tmp_path):
    proc = ansible_lint(make_project(tmp_path))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    for rule in ("fqcn", "no-changed-when", "name[missing]", "name[casing]",
                 "risky-file-permissions"):
        assert rule in output, (rule, output)


def test_yamllint_refuses_long_lines_implicit_octal_and_a_missing_document_start(tmp_path):
    make_project(tmp_path)
    (tmp_path / "bad.yml").write_text("mode: 0644\nkey: " + "x" * 100 + "\n")
    proc = yamllint(tmp_path, "bad.yml")
    assert proc.returncode != 0
    for rule in ("(octal-values)", "(line-length)", "(document-start)"):
        assert rule in proc.stdout, (rule, proc.stdout)
