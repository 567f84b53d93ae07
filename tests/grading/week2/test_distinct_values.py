"""Grading: week 2, distinct_values (labs/week2/aggregators.py), a custom aggregator."""

import random

import pytest

from rtml.impl import exercise

pytestmark = pytest.mark.grading


def _run(values):
    """What one window computes from `values`: initialize, then agg each value."""
    agg = exercise("distinct_agg")
    state = exercise("distinct_initialize")()
    for value in values:
        state = agg(state, value)
    return state


def test_an_empty_window_counts_nothing():
    """initialize() is an empty list, and its result is 0."""
    state = exercise("distinct_initialize")()
    assert state == []
    assert exercise("distinct_result")(state) == 0


def test_agg_keeps_each_value_once_in_order():
    """[3, 9] + 5 -> [3, 5, 9]; + 9 again -> unchanged; the result counts 3."""
    agg = exercise("distinct_agg")
    assert agg([3, 9], 5) == [3, 5, 9]
    assert agg([3, 9], 9) == [3, 9]
    assert exercise("distinct_result")(_run([9, 3, 5, 3, 9])) == 3


def test_agg_ignores_missing_values():
    """None (a record without the column) is not a value."""
    assert _run([None, 4, None]) == [4]


def test_agg_does_not_change_the_state_it_was_given():
    """agg returns a new list: the old state, which the caller may still hold, stays as it was."""
    old = [1, 2]
    exercise("distinct_agg")(old, 7)
    assert old == [1, 2]


def test_merge_is_the_sorted_union():
    """[3, 9] merged with [5, 9] -> [3, 5, 9]: a value in both sessions counts once."""
    assert exercise("distinct_merge")([3, 9], [5, 9]) == [3, 5, 9]
    assert exercise("distinct_merge")([], [2]) == [2]


def test_merging_two_sessions_equals_one_window():
    """Merging two halves' states gives the state of one window that saw all the values.

    A session window relies on it when a late record joins two sessions."""
    merge = exercise("distinct_merge")
    rng = random.Random(7)
    for _ in range(100):
        values = [rng.randrange(20) for _ in range(rng.randrange(0, 30))]
        cut = rng.randrange(0, len(values) + 1)
        assert merge(_run(values[:cut]), _run(values[cut:])) == _run(values)


def test_the_state_is_json():
    """The state store and its changelog hold JSON: the state is a list, not a set."""
    assert isinstance(_run(["a", "b"]), list)
    assert isinstance(exercise("distinct_merge")(["a"], ["b"]), list)
