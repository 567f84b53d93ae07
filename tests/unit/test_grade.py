"""`rtml grade` runs a week's grading tests against an implementation, per exercise."""

from rtml.cli import main
from rtml.grade import grade


def test_solutions_pass_every_check():
    result = grade("week1", impl="solutions")
    assert result.passed
    assert {c.exercise for c in result.checks} == {"partition_key"}
    assert "3 of 3 checks pass" in result.render()


def test_unfilled_labs_fail_with_the_hint():
    result = grade("week1", impl="labs")
    assert not result.passed
    assert all("NotImplementedError: TODO" in c.detail for c in result.checks if not c.passed)
    assert "FAIL" in result.render()


def test_cli_exit_status(capsys):
    assert main(["grade", "week1", "--impl", "solutions"]) == 0
    assert "[PASS]" in capsys.readouterr().out
