"""The roles' Jinja templates rendered as Ansible renders them: its core filters (`bool`,
`to_json`, ...) from ansible-core itself, undefined variables an error."""

from __future__ import annotations

from pathlib import Path

import jinja2
from ansible.plugins.filter.core import FilterModule


def environment(*search: Path, trim_blocks: bool = False,
                keep_trailing_newline: bool = False) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(p) for p in search]),
                             undefined=jinja2.StrictUndefined, trim_blocks=trim_blocks,
                             keep_trailing_newline=keep_trailing_newline)
    env.filters.update(FilterModule().filters())
    return env
