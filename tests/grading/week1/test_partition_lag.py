"""Grading: week 1, partition_lag (labs/week1/lag.py)."""

import pytest

from rtml.impl import exercise

pytestmark = pytest.mark.grading


def test_lag_is_the_records_left_to_read():
    """Committed at 40 with the log ending at 100: 60 records left (offsets 40..99)."""
    assert exercise("partition_lag")(40, 0, 100) == 60


def test_committed_at_the_end_means_no_lag():
    """A group committed at the log end has read everything: lag 0."""
    assert exercise("partition_lag")(100, 0, 100) == 0


def test_no_commit_counts_from_the_log_start():
    """A group that never committed starts at the log start (earliest): lag is end - start."""
    lag = exercise("partition_lag")
    assert lag(None, 20, 100) == 80
    assert lag(None, 50, 50) == 0


def test_commit_below_the_log_start_counts_from_the_log_start():
    """Retention deleted records below the log start: count from there, not from the commit."""
    # The group committed 5, but records 5..49 are gone: it resumes at 50.
    assert exercise("partition_lag")(5, 50, 120) == 70


def test_lag_is_never_negative():
    """An old commit beyond the log end (the topic was created again) is lag 0, not below."""
    assert exercise("partition_lag")(500, 0, 100) == 0
