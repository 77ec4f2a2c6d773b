"""One fact gathering per host and deploy: the facts `invoke deploy` reads first for the
wheelhouse (ark_ops.deploy.platforms) reach the play through ansible.cfg's fact cache, so
every role's own `setup` preflight task is skipped. Real Ansible on the control node."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ark_ops.deploy import platforms as wheel_platforms
from ark_ops.deploy.playbook import ansible_env
from ark_ops.paths import REPO_ROOT

pytestmark = pytest.mark.requirement("DEPLOY_01")

ROLE_PREFLIGHTS = ["ark_baseline", "ark_base", "ark_redis", "ark_runtime"]


def setup_tasks() -> list[dict]:
    """Each role's guarded `setup` task, exactly as the role has it."""
    tasks = []
    for role in ROLE_PREFLIGHTS:
        preflight = yaml.safe_load((REPO_ROOT / "roles" / role / "tasks/preflight.yml")
                                   .read_text())
        found = [t for t in preflight if "ansible.builtin.setup" in t]
        assert len(found) == 1, f"{role} should gather its facts in exactly one task"
        tasks.append(found[0])
    return tasks


@pytest.fixture
def local_inventory(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ANSIBLE_CACHE_PLUGIN_CONNECTION", str(tmp_path / "facts"))
    monkeypatch.setenv("ARK_OPS_ANSIBLE_STRATEGY", "linear")  # the cache is the subject here
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"ark": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    return inv


def run_setup_tasks(inv: Path, tmp_path: Path) -> str:
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{"name": "The roles' fact preflights", "hosts": "ark",
                                     "gather_facts": False, "tasks": setup_tasks()}]))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), str(play)],
        env=ansible_env(), cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_the_play_reuses_the_deploys_first_gathering(local_inventory, tmp_path):
    platforms = wheel_platforms.gather(local_inventory, None)
    assert set(platforms) == {"localhost"}
    assert (tmp_path / "facts" / "localhost").is_file()
    out = run_setup_tasks(local_inventory, tmp_path)
    assert "ok=0" in out and "skipped=4" in out, out[-1500:]


def test_without_the_cache_the_play_gathers_once(local_inventory, tmp_path):
    out = run_setup_tasks(local_inventory, tmp_path)
    assert "ok=1" in out and "skipped=3" in out, out[-1500:]
