"""A test that needs a tool `./ops` installs fails when the tool is missing, naming the
package: a skipped check would leave a requirement looking proven when nothing ran.

    needs_tool("logrotate", "logrotate")          # a mark, on a test, class or module
    require_tool("/usr/bin/chromium", "chromium")  # inside a fixture or test
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def missing(tool: str) -> bool:
    return shutil.which(tool) is None and not (tool.startswith("/") and Path(tool).exists())


def require_tool(tool: str, package: str) -> None:
    if missing(tool):
        pytest.fail(f"{tool} is missing: install it with `apt-get install {package}` "
                    "(./ops installs it)", pytrace=False)


def needs_tool(tool: str, package: str) -> pytest.MarkDecorator:
    """Mark: before the test runs, fail (not skip) when `tool` is not installed."""
    return pytest.mark.needs_tool(tool, package)
