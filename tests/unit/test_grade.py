"""`rtml grade` runs a week's grading tests against an implementation, per exercise."""

from rtml.cli import main
from rtml.contracts import EXERCISES
from rtml.grade import grade


def test_solutions_pass_every_check():
    result = grade("week1", impl="solutions")
    assert result.passed
    # Every week 1 exercise is graded, each under its own name.
    assert {c.exercise for c in result.checks} == {e.name for e in EXERCISES if e.week == 1}
    n = len(result.checks)
    assert f"{n} of {n} checks pass" in result.render()


def test_unfilled_labs_fail_with_the_hint():
    result = grade("week1", impl="labs")
    assert not result.passed
    assert all("NotImplementedError: TODO" in c.detail for c in result.checks if not c.passed)
    assert "FAIL" in result.render()


def test_cli_exit_status(capsys):
    assert main(["grade", "week1", "--impl", "solutions"]) == 0
    assert "[PASS]" in capsys.readouterr().out


def test_week2_solutions_pass_and_every_exercise_is_graded():
    result = grade("week2", impl="solutions")
    assert result.passed, result.render()
    # An aggregator's four functions are graded together, under the exercise's name.
    graded = {e.graded_as for e in EXERCISES if e.week == 2}
    assert graded == {"customer_window", "choose_grace", "distinct_values"}
    assert {c.exercise for c in result.checks} == graded


def test_week2_unfilled_labs_fail_with_the_hint():
    result = grade("week2", impl="labs")
    assert not result.passed
    failed = [c for c in result.checks if not c.passed]
    assert {c.exercise for c in failed} == {"customer_window", "choose_grace", "distinct_values"}
    assert all("NotImplementedError: TODO" in c.detail for c in failed)


def test_week3_solutions_pass_and_every_exercise_is_graded():
    result = grade("week3", impl="solutions")
    assert result.passed, result.render()
    graded = {e.graded_as for e in EXERCISES if e.week == 3}
    assert graded == {"labels_known_at", "score_batch", "latency_measures"}
    assert {c.exercise for c in result.checks} == graded


def test_week3_unfilled_labs_fail_with_the_hint():
    result = grade("week3", impl="labs")
    assert not result.passed
    failed = [c for c in result.checks if not c.passed]
    assert {c.exercise for c in failed} == {"labels_known_at", "score_batch", "latency_measures"}
    assert all("NotImplementedError: TODO" in c.detail for c in failed)


def test_week4_solutions_pass_and_every_exercise_is_graded():
    result = grade("week4", impl="solutions")
    assert result.passed, result.render()
    graded = {e.graded_as for e in EXERCISES if e.week == 4}
    assert graded == {"apply_card_event", "first_delivery", "route_failure"}
    assert {c.exercise for c in result.checks} == graded


def test_week4_unfilled_labs_fail_with_the_hint():
    result = grade("week4", impl="labs")
    assert not result.passed
    failed = [c for c in result.checks if not c.passed]
    assert {c.exercise for c in failed} == {"apply_card_event", "first_delivery", "route_failure"}
    assert all("NotImplementedError: TODO" in c.detail for c in failed)
