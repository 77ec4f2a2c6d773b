"""`ark_task_cpu`: where the control node's CPU goes in a playbook, task by task.

Off unless enabled (`ANSIBLE_CALLBACKS_ENABLED=ark_task_cpu`, as benchmarks/deploy_timing.py
--profile does). At each task start it samples the CPU (user + system) of ansible-playbook
and every process under it (fork workers, mitogen's per-host interpreters), so the change
up to the next task start is what that task cost the control side, over all its hosts
(the linear strategies run a task on every host before the next). With
ARK_TASK_CPU_OUT=<path> it writes the rows there as JSON when the playbook ends.
"""

from __future__ import annotations

import json
import os
import time

import psutil
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: ark_task_cpu
type: aggregate
short_description: control-side CPU and wall time per task
description: Samples the CPU of ansible-playbook and its children at each task start.
requirements: [psutil]
"""


def tree_cpu() -> float:
    """CPU seconds of this process and its live descendants. A worker that exited and was
    reaped counts through its parent's children_* times."""
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:  # gone between the listing and the read
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "ark_task_cpu"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[dict[str, object]] = []
        self._current: tuple[str, float, float] | None = None

    def _close(self) -> None:
        if self._current:
            name, wall0, cpu0 = self._current
            self._rows.append({"task": name, "wall": time.monotonic() - wall0,
                               "cpu": tree_cpu() - cpu0})
            self._current = None

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:  # noqa: ARG002
        self._close()
        role = task._role.get_name() if task._role else ""
        name = task.get_name()
        self._current = (f"{role} : {name}" if role and not name.startswith(role) else name,
                         time.monotonic(), tree_cpu())

    def v2_playbook_on_handler_task_start(self, task) -> None:
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_stats(self, stats) -> None:  # noqa: ARG002
        self._close()
        out = os.environ.get("ARK_TASK_CPU_OUT")
        if out:
            with open(out, "w", encoding="utf-8") as fh:
                json.dump(self._rows, fh)
