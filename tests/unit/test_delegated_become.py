"""Tasks delegated to the control node never become root there.

Under mitogen_linear, a delegated task takes `ansible_become` from the inventory (the lab's
and a real fleet's `deploy` user set it for all hosts) over the task's `become: false`, and
fails on a control node without sudo (found by tests/e2e/test_lab_deploy.py). A task
variable wins over both, so every `delegate_to: localhost` task must set it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ark_ops.paths import REPO_ROOT


def tasks_in(node):
    if isinstance(node, list):
        for item in node:
            yield from tasks_in(item)
    elif isinstance(node, dict):
        if "name" in node:
            yield node
        for key in ("tasks", "pre_tasks", "post_tasks", "block", "rescue", "always"):
            yield from tasks_in(node.get(key))


def delegated_tasks() -> list[tuple[Path, dict]]:
    found = []
    for path in [*(REPO_ROOT / "playbooks").glob("*.yml"),
                 *(REPO_ROOT / "roles").glob("*/tasks/*.yml")]:
        for task in tasks_in(yaml.safe_load(path.read_text())):
            if task.get("delegate_to") in ("localhost", "127.0.0.1"):
                found.append((path.relative_to(REPO_ROOT), task))
    return found


def test_there_are_delegated_tasks_to_check():
    assert len(delegated_tasks()) >= 3


def test_every_task_on_the_control_node_sets_ansible_become_false():
    wrong = [f"{path}: {task['name']}" for path, task in delegated_tasks()
             if (task.get("vars") or {}).get("ansible_become") is not False]
    assert not wrong, "set `vars: {ansible_become: false}` on: " + "; ".join(wrong)
