"""pytest plugin part of `invoke verify`: each check's evidence, the commands it ran on the
host and what they answered, kept as JUnit properties (`evidence`) for the HTML report.

testinfra logs every command result at DEBUG on the "testinfra" logger; a handler listens
only while a test item runs (setup, call, teardown), so what the plugin itself runs before
the tests (reading the env files to learn the secrets) is never recorded. The properties
pass through the secret masking of ark_ops.report like every other part of a test report.
"""

from __future__ import annotations

import logging

import pytest

EVIDENCE = "evidence"
MAX_COMMANDS = 25  # per check: enough to follow it, small enough for a report people read
MAX_OUTPUT = 1500  # characters of stdout/stderr kept per command


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def describe(result) -> str:
    """`$ command`, exit status, then the output (cut to MAX_OUTPUT)."""
    out = _text(getattr(result, "stdout", "")) + _text(getattr(result, "stderr", ""))
    if len(out) > MAX_OUTPUT:
        out = out[:MAX_OUTPUT] + f"\n... ({len(out) - MAX_OUTPUT} more characters)"
    return f"$ {_text(result.command)}\n[exit {result.exit_status}]\n{out}".rstrip()


class _Collector(logging.Handler):
    """Appends each command result to the running item's properties as it comes (JUnit
    writes a test case's properties from its last report, the teardown's)."""

    def __init__(self, item) -> None:
        super().__init__(logging.DEBUG)
        self.item = item
        self.kept = 0

    def emit(self, record: logging.LogRecord) -> None:
        result = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if result is None or not hasattr(result, "exit_status") or self.kept >= MAX_COMMANDS:
            return
        self.kept += 1
        self.item.user_properties.append((EVIDENCE, describe(result)))


class EvidenceRecorder:
    logger = logging.getLogger("testinfra")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        collector = _Collector(item)
        level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(collector)
        try:
            return (yield)
        finally:
            self.logger.removeHandler(collector)
            self.logger.setLevel(level)
