"""The four agents (Kyle -> Joey -> Kenny -> HRM) and the runtime loop they share."""

from __future__ import annotations

AGENTS = ("kyle", "joey", "kenny", "hrm")


def agent_class(name: str) -> type:
    """The class for `name` (imported lazily: each process loads only its own agent)."""
    from ark_runtime.validators import validate_agent_name

    name = validate_agent_name(name)
    if name == "kyle":
        from ark_runtime.agents.kyle import Kyle

        return Kyle
    if name == "joey":
        from ark_runtime.agents.joey import Joey

        return Joey
    if name == "kenny":
        from ark_runtime.agents.kenny import Kenny

        return Kenny
    from ark_runtime.agents.hrm import Hrm

    return Hrm
