"""Shared by every test directory: a missing tool fails the test that needs it
(tests/support/tools.py)."""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "needs_tool(tool, package): fail, not skip, when the tool is missing")


def pytest_runtest_setup(item):
    from tests.support.tools import require_tool

    for mark in item.iter_markers("needs_tool"):
        require_tool(*mark.args)
