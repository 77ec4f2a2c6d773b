"""The agents (declared in ark_runtime/pipeline.py) and the runtime loop they share."""

from __future__ import annotations

import importlib

from ark_runtime.pipeline import BY_NAME
from ark_runtime.pipeline import NAMES as AGENTS


def agent_class(name: str) -> type:
    """The class for `name` (imported lazily: each process loads only its own agent)."""
    from ark_runtime.validators import validate_agent_name

    module, _, cls = BY_NAME[validate_agent_name(name)].cls.partition(":")
    return getattr(importlib.import_module(module), cls)


def environment() -> list[tuple[str, str, str, str]]:
    """What the agents read from their environment, from the one declaration (rendered into
    docs/AGENT_PROTOCOL.md): [(variable, agents, default, meaning)]."""
    from ark_runtime.settings import VARIABLES

    rows = []
    for var in VARIABLES.values():
        readers = [a for a in AGENTS if a in var.read_by]
        if not readers:
            continue
        default = var.default_text or ("-" if var.default is None else str(var.default))
        rows.append((var.name, "all" if len(readers) == len(AGENTS) else ", ".join(readers),
                     default, var.description))
    rows.append(("NOTIFY_SOCKET / WATCHDOG_USEC", "all", "set by systemd",
                 "sd_notify and watchdog (systemd's, not in the env schema)"))
    return rows
