"""A test that needs a tool `./ops` installs fails without it (tests/support/tools.py):
a skip would let a report count the requirement as proven while nothing ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tools import require_tool

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[2]


def test_a_missing_tool_fails_naming_its_package():
    with pytest.raises(pytest.fail.Exception, match="apt-get install ark-nope-pkg"):
        require_tool("ark-no-such-tool", "ark-nope-pkg")
    require_tool("sh", "dash")  # present: nothing happens


def test_the_needs_tool_mark_fails_the_test_instead_of_skipping(pytester):
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_marked="""
        from tests.support.tools import needs_tool

        @needs_tool("ark-no-such-tool", "ark-nope-pkg")
        def test_uses_it():
            pass

        @needs_tool("sh", "dash")
        def test_has_it():
            pass
    """)
    pytester.syspathinsert(REPO)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ark-no-such-tool is missing*ark-nope-pkg*"])
