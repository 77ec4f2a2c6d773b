"""plugins/callback/ark_task_cpu.py: the control side's CPU per task, as deploy_timing.py
--profile reads it. A real ansible-playbook run on localhost: a task that burns CPU in its
worker must show it, a trivial one must not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: trivial
      ansible.builtin.debug:
        msg: hi
    - name: busy
      ansible.builtin.command:
        argv: [{python}, -c, "sum(range(30_000_000))"]
      changed_when: false
"""


def run(tmp_path: Path, enabled: bool) -> Path:
    (tmp_path / "pb.yml").write_text(PLAYBOOK.format(python=json.dumps(sys.executable)))
    out = tmp_path / "tasks.json"
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "ANSIBLE_STRATEGY": "linear", "ARK_TASK_CPU_OUT": str(out)}
    if enabled:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "ark_task_cpu"
    subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
                    "-e", f"ansible_python_interpreter={sys.executable}",
                    str(tmp_path / "pb.yml")], env=env, cwd=REPO, check=True,
                   capture_output=True, timeout=120)
    return out


def test_each_task_gets_the_cpu_its_worker_used(tmp_path):
    rows = {r["task"]: r for r in json.loads(run(tmp_path, True).read_text())}
    assert set(rows) == {"trivial", "busy"}
    assert rows["busy"]["cpu"] > 0.2, rows
    assert rows["busy"]["cpu"] > 3 * rows["trivial"]["cpu"], rows


def test_off_unless_enabled(tmp_path):
    assert not run(tmp_path, False).exists()
