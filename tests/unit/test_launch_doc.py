"""DOC_01: LAUNCH.md is complete, has no placeholder, and every `invoke` task and option and
every `ark` subcommand and option it names exists (checked against tasks.py's collection,
what `invoke --list` / `invoke --help TASK` print, and the `ark` argparse tree)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from doc_commands import extract, problems_in
from test_ops_handbook import sections, slug

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "LAUNCH.md"
# What the issue asks LAUNCH.md to cover, as its section headings.
SECTIONS = ("Prerequisites", "The lab in two commands", "First deploy onto your own inventory",
            "Secrets", "Upgrade and rollback", "Backup and DR drills", "Production checklist",
            "Troubleshooting by symptom")
PLACEHOLDER = re.compile(r"\b(TODO|TBD|FIXME|XXX)\b|lorem ipsum|to be written|coming soon",
                         re.IGNORECASE)


@pytest.mark.requirement("DOC_01")
def test_every_section_the_issue_asks_for_is_there_and_not_empty() -> None:
    have = sections(LAUNCH.read_text())
    for title in SECTIONS:
        assert slug(title) in have, title
        assert len(have[slug(title)].split()) > 40, f"{title} is nearly empty"


@pytest.mark.requirement("DOC_01")
def test_no_placeholder() -> None:
    found = PLACEHOLDER.findall(LAUNCH.read_text())
    assert found == []


@pytest.mark.requirement("DOC_01")
def test_every_checklist_item_names_the_command_that_checks_it() -> None:
    checklist = sections(LAUNCH.read_text())[slug("Production checklist")]
    items = re.findall(r"^- \[ \] (.*)$", checklist, re.M)
    assert len(items) >= 10
    assert [i for i in items if not re.search(r"`[^`]+`", i)] == []


@pytest.mark.requirement("DOC_01")
def test_the_lab_takes_two_commands() -> None:
    block = sections(LAUNCH.read_text())[slug("The lab in two commands")]
    first = re.search(r"```sh\n(.*?)```", block, re.S).group(1)
    assert [c.words[0] for c in extract(f"```\n{first}```")] == ["lab.up", "deploy"]


@pytest.mark.requirement("DOC_01")
def test_every_invoke_and_ark_command_exists() -> None:
    commands, problems = problems_in(LAUNCH.read_text())
    assert len(commands) > 30
    assert problems == []


def test_the_invoke_surface_is_what_invoke_prints() -> None:
    """The check reads tasks.py's collection; it must agree with `invoke --list`."""
    from doc_commands import invoke_surface

    def invoke(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout

    # `invoke --list`: each task on a line of its own, indented two spaces.
    names = set(re.findall(r"^  ([a-z][\w.-]*)", invoke("--list"), re.M))
    assert names == set(invoke_surface())
    options = invoke("--help", "config.rollback").split("Options:", 1)[1]
    assert {f for f in invoke_surface()["config.rollback"] if f.startswith("--")} == set(
        re.findall(r"(--[a-z][a-z-]*)", options))


@pytest.mark.requirement("SEC_01")
def test_the_secrets_table_lists_every_secret_the_schema_declares() -> None:
    """Every sensitive variable of ark_runtime/env.schema.yaml, and the sudo password, has a
    row saying where it lives."""
    import yaml

    schema = yaml.safe_load((REPO / "ark_runtime" / "env.schema.yaml").read_text())
    sensitive = {name for name, v in schema["variables"].items() if v.get("sensitive")}
    assert {"TELEGRAM_BOT_TOKEN", "TRADING_API_KEY", "ARK_REDIS_PASSWORD"} <= sensitive
    table = sections(LAUNCH.read_text())[slug("Secrets")].split("Systemd hands")[0]
    rows = [r for r in table.splitlines() if r.startswith("| ") and "---" not in r][1:]
    named = {n for r in rows for n in re.findall(r"`([A-Z][A-Z0-9_]+)`", r.split("|")[2])}
    assert sensitive - named == set(), "secrets missing from LAUNCH.md's table"
    assert any("ansible_become_password" in r for r in rows), "the sudo password's row"


def _launcher(tmp_path: Path) -> Path:
    """The launcher ./ops writes into .venv/bin/ark, for this venv and checkout (written
    under tmp_path: the venv may be shared with other checkouts)."""
    from ark_ops import ark_launcher

    venv = Path(sys.executable).parent.parent
    path = tmp_path / "ark"
    path.write_text(ark_launcher.launcher_text(venv))
    path.chmod(0o755)
    return path


def test_the_launcher_is_written_once_and_kept(tmp_path) -> None:
    from ark_ops import ark_launcher

    (tmp_path / "bin").mkdir()
    assert ark_launcher.write(tmp_path) and not ark_launcher.write(tmp_path)
    assert (tmp_path / "bin" / "ark").stat().st_mode & 0o777 == 0o755
    assert str(REPO) in (tmp_path / "bin" / "ark").read_text()


@pytest.mark.requirement("DOC_01")
def test_every_launch_command_runs(tmp_path) -> None:
    """Each safe command runs as written (`invoke lock --check`), every other one as its
    `--help`: the task or subcommand imports, parses and exits 0. `ark` runs through the
    control node's `.venv/bin/ark` launcher that ./ops writes (ark_ops/ark_launcher.py)."""
    import os

    from doc_commands import safe_runs

    programs = {"invoke": [sys.executable, "-m", "invoke"], "ark": [str(_launcher(tmp_path))]}
    runs = safe_runs(extract(LAUNCH.read_text()))
    assert ("invoke", "lock", "--check") in runs and any(r[0] == "ark" for r in runs)
    failed = []
    for program, *args in runs:
        proc = subprocess.run([*programs[program], *args], cwd=tmp_path if program == "ark"
                              else REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": ""})
        if proc.returncode != 0:
            failed.append(f"{program} {' '.join(args)}: exit {proc.returncode}: "
                          f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    assert failed == []


@pytest.mark.requirement("DOC_01")
def test_hash_password_runs_as_launch_md_writes_it(tmp_path) -> None:
    """`echo -n 'the password' | .venv/bin/ark api hash-password` prints a hash, not the
    password."""
    assert "| .venv/bin/ark api hash-password" in LAUNCH.read_text()
    proc = subprocess.run([str(_launcher(tmp_path)), "api", "hash-password"],
                          input="the password", capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("scrypt") and "the password" not in proc.stdout


@pytest.mark.requirement("DOC_01")
def test_the_example_inventory_is_the_one_launch_md_shows() -> None:
    import yaml

    block = sections(LAUNCH.read_text())[slug("First deploy onto your own inventory")]
    shown = yaml.safe_load(re.search(r"```yaml\n(.*?)```", block, re.S).group(1))
    example = yaml.safe_load((REPO / "inventory" / "example" / "hosts.yml").read_text())
    assert shown == example
    groups = example["all"]["children"]
    assert len(groups["ark"]["hosts"]) == 3 and "ark_monitoring" in groups
    split = groups["ark"]["children"]
    assert split["ark_redis"]["hosts"].keys() != split["ark_api"]["hosts"].keys()
    assert (REPO / "inventory/example/group_vars/ark/vault.yml.example").is_file()


@pytest.mark.requirement("DOC_01")
def test_fleet_commands_outside_the_lab_name_their_inventory() -> None:
    """Without --inventory a fleet task acts on the lab: a production command that forgets
    it would act on the wrong hosts. Bare mentions (`invoke deploy` in a sentence) and lines
    that say they are about the lab are not commands to run."""
    from doc_commands import invoke_surface, invoke_task

    surface = invoke_surface()
    text = LAUNCH.read_text()
    after_lab = text[text.index("## First deploy onto your own inventory"):]
    missing = []
    for cmd in extract(after_lab):
        task = invoke_task(cmd, surface) if cmd.program == "invoke" else None
        if task is None or "--inventory" not in surface[task] or "lab" in cmd.line:
            continue
        if len(cmd.words) > 1 and "--inventory" not in cmd.words:
            missing.append(cmd.line)
    assert missing == []
