"""An honest verdict per requirement and host (issue 22, section 6): "pass" only when every
check that applies there ran and passed. Read-only checks alone never make MEM_02 or
REC_02 green on a production inventory where their disruptive checks were skipped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ark_ops.verify.html import Check, matrix
from ark_ops.verify.report import DISRUPTIVE, NOT_HERE, verdict

pytest_plugins = ["pytester"]

PASSED, FAILED = ("passed", ""), ("failed", "")
SKIP_DISRUPTIVE = ("skipped", "Skipped: " + DISRUPTIVE + "disturbs the host")
SKIP_NOT_HERE = ("skipped", NOT_HERE + "ark-2 is not in ark_redis")
SKIP_OTHER = ("skipped", "needs the inventory")


def test_read_only_checks_passing_do_not_prove_a_requirement_whose_disruptive_ones_skipped():
    assert verdict([PASSED, PASSED, SKIP_DISRUPTIVE]) == \
        "not proven here (1 disruptive check skipped)"
    assert verdict([PASSED, SKIP_DISRUPTIVE, SKIP_DISRUPTIVE]) == \
        "not proven here (2 disruptive checks skipped)"
    assert verdict([PASSED, SKIP_OTHER, SKIP_DISRUPTIVE]) == \
        "not proven here (1 disruptive + 1 other check skipped)"
    assert verdict([PASSED, SKIP_OTHER]) == "not proven here (1 check skipped)"


def test_checks_that_do_not_apply_here_leave_the_verdict_alone():
    assert verdict([PASSED, SKIP_NOT_HERE]) == "pass"
    assert verdict([SKIP_NOT_HERE, SKIP_NOT_HERE]) == "n/a"
    assert verdict([FAILED, SKIP_DISRUPTIVE]) == "FAIL"
    assert verdict([]) == "-"


outcome = st.sampled_from([PASSED, FAILED, SKIP_DISRUPTIVE, SKIP_NOT_HERE, SKIP_OTHER,
                           ("error", "")])


@given(st.lists(outcome, max_size=8))
def test_pass_means_every_applicable_check_ran_and_passed(outcomes):
    applicable = [o for o in outcomes if o != SKIP_NOT_HERE]
    said = verdict(outcomes)
    assert (said == "pass") == (bool(applicable) and all(o == PASSED for o in applicable))
    assert (said == "FAIL") == any(o[0] in ("failed", "error") for o in outcomes)


def test_the_html_matrix_gives_the_same_verdict():
    def check(nodeid, outcome, message=""):
        return Check(nodeid, "ark-1", ["MEM_02"], outcome, message=message)

    hosts, rows = matrix([check("a", "passed"), check("b", "skipped", SKIP_DISRUPTIVE[1])],
                         {"MEM_02": "cold start"})
    [row] = rows
    assert (hosts, row.cells) == (["ark-1"], ["skip"])
    assert row.notes == ["not proven here (1 disruptive check skipped)"]


def test_the_terminal_and_markdown_say_not_proven(pytester, tmp_path):
    pytester.makeini("[pytest]\nmarkers =\n    requirement(id): proves a requirement\n")
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.requirement("MEM_02")
        def test_reads_the_boot_state():
            pass

        @pytest.mark.requirement("MEM_02")
        def test_corrupts_the_store_and_restarts():
            pytest.skip({DISRUPTIVE!r} + "disturbs the host")

        @pytest.mark.requirement("SEC_01")
        def test_env_files_private():
            pass

        @pytest.mark.requirement("SEC_01")
        def test_redis_acl():
            pytest.skip({NOT_HERE!r} + "not a Redis host")
    """)
    md = tmp_path / "report.md"
    result = pytester.runpytest("-p", "ark_ops.verify.report", f"--requirements-report={md}",
                                "-p", "no:xdist")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(["MEM_02*not proven here (1 disruptive check skipped)*",
                                 "SEC_01*pass*", "not proven here (checks skipped): MEM_02"])
    text = md.read_text()
    assert "| MEM_02 | not proven here (1 disruptive check skipped) |" in text
    assert "| SEC_01 | pass |" in text
