"""Grading: week 3, latency_measures (labs/week3/freshness.py)."""

import pytest

from rtml.impl import exercise

pytestmark = pytest.mark.grading


def test_the_docstring_example():
    """Appended 1000, features 1004, predicted 1010 (ms): 4000, 10000 and 6000 µs."""
    assert exercise("latency_measures")(1_000, 1_004, 1_010) == {
        "freshness": 4_000,
        "event_to_prediction": 10_000,
        "scoring": 6_000,
    }


def test_whole_microseconds():
    """Every measure is an int number of µs (ms times 1000), on real epoch timestamps."""
    appended = 1_764_000_000_000
    out = exercise("latency_measures")(appended, appended + 37, appended + 52)
    assert all(type(v) is int for v in out.values())
    assert (out["freshness"], out["event_to_prediction"], out["scoring"]) == (
        37_000,
        52_000,
        15_000,
    )


def test_freshness_plus_scoring_is_event_to_prediction():
    """The two stages add up to the whole: freshness + scoring == event_to_prediction."""
    measure = exercise("latency_measures")
    for appended, feature, predicted in [(0, 0, 0), (10, 250, 251), (5, 5, 900)]:
        out = measure(appended, feature, predicted)
        assert out["freshness"] + out["scoring"] == out["event_to_prediction"]


def test_clock_skew_is_kept_negative():
    """Features stamped before the append (clocks disagree): a negative freshness, not 0."""
    out = exercise("latency_measures")(2_000, 1_997, 2_010)
    assert out["freshness"] == -3_000 and out["scoring"] == 13_000
