"""Ansible's `mitogen_linear` strategy, found through the repo's ansible.cfg.

The real plugin lives inside the installed `mitogen` package (requirements.lock), whose path
depends on the venv; this shim makes `strategy_plugins = plugins/strategy` portable. The
strategy itself adds mitogen's connection and action plugin directories when it starts.
ARK_OPS_ANSIBLE_STRATEGY=linear (or `deploy(strategy="linear")` in code) uses plain `linear`.
"""

from __future__ import annotations

try:
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule
except ImportError as exc:  # a venv without the lock's mitogen: say what to do
    from ansible.errors import AnsibleError

    raise AnsibleError(
        "the mitogen_linear strategy needs the `mitogen` package from requirements.lock "
        f"({exc}); install the lock (./ops) or set ARK_OPS_ANSIBLE_STRATEGY=linear") from None

__all__ = ["StrategyModule"]
