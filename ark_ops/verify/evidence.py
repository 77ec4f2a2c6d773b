"""pytest plugin part of `invoke verify`: each check's evidence, the commands it ran on the
host and what they answered, kept as JUnit properties (`evidence`) for the HTML report.

testinfra logs every command result at DEBUG on the "testinfra" logger; a handler listens
only while a test item runs (setup, call, teardown), so what the plugin itself runs before
the tests (reading the env files to learn the secrets) is never recorded. The properties
pass through the secret masking of ark_ops.verify.report like every other part of a test report.
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
    """Keeps the item's command results as they come. They are described only at teardown:
    the SSH backend logs the local `ssh ...` line first and only then sets the result's
    command back to the one run on the host, which is what the report should show."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.results: list = []

    def emit(self, record: logging.LogRecord) -> None:
        result = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if result is not None and hasattr(result, "exit_status") \
                and len(self.results) < MAX_COMMANDS:
            self.results.append(result)


class EvidenceRecorder:
    logger = logging.getLogger("testinfra")

    def __init__(self) -> None:
        self.collector: _Collector | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.collector = _Collector()
        level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self.collector)
        try:
            return (yield)
        finally:
            self.logger.removeHandler(self.collector)
            self.logger.setLevel(level)
            self.collector = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item, nextitem):
        # Before the teardown report is made: JUnit writes a test case's properties from
        # its last report, and the secret masking sees them there like everything else.
        try:
            return (yield)
        finally:
            if self.collector is not None:
                item.user_properties += [(EVIDENCE, describe(r))
                                         for r in self.collector.results]
