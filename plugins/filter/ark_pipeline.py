"""`ark_pipeline`: a list from the one pipeline declaration (ark_runtime/pipeline.py).

    {{ 'agents' | ark_pipeline }}        -> [kyle, joey, kenny, hrm]
    {{ 'sharded' | ark_pipeline }}       -> [joey]

The role never writes the agents out itself: adding an agent to the declaration adds it to
the role's checks, units and log rotation.
"""

from __future__ import annotations

import sys
from pathlib import Path

# ark_runtime is found from the repo (the control node deploys from its checkout).
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from ansible.errors import AnsibleFilterError  # noqa: E402

from ark_runtime import pipeline  # noqa: E402


def ark_pipeline(what: str) -> list[str]:
    try:
        return pipeline.view(str(what))
    except KeyError as exc:
        raise AnsibleFilterError(f"ark_pipeline: {exc.args[0]}") from None


class FilterModule:
    def filters(self):
        return {"ark_pipeline": ark_pipeline}
