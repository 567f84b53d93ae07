"""Grading: week 2, choose_grace (labs/week2/lateness.py)."""

import random

import pytest

from rtml.features.lateness import dropped
from rtml.impl import exercise

pytestmark = pytest.mark.grading


def test_the_docstring_example():
    """Delays [0, 0, 500, 20000] with 25% loss allowed: a grace of 500 ms."""
    assert exercise("choose_grace")([0, 0, 500, 20_000], 0.25) == 500


def test_no_loss_allowed_waits_for_the_latest_record():
    """max_loss 0: the grace must cover the largest delay, and no more."""
    assert exercise("choose_grace")([30, 0, 1200, 7], 0.0) == 1200


def test_in_order_data_needs_no_grace():
    """Records that all arrived in order (delay 0), or no records at all: grace 0."""
    choose = exercise("choose_grace")
    assert choose([0, 0, 0], 0.0) == 0
    assert choose([], 0.1) == 0


def test_everything_may_be_lost():
    """max_loss 1: every record may be dropped, so no grace is needed."""
    assert exercise("choose_grace")([5, 900, 40], 1.0) == 0


def test_a_record_with_delay_equal_to_the_grace_is_kept():
    """Ties: delays [0, 100, 100, 100] with 25% loss allowed need 100 ms, which keeps all four.

    Any grace below 100 ms drops three records."""
    assert exercise("choose_grace")([0, 100, 100, 100], 0.25) == 100


def test_floating_point_does_not_change_the_count():
    """0.29 * 100 is 28.999999999999996: 29 of 100 records may still be dropped."""
    delays = list(range(1, 101))  # 1..100 ms
    assert exercise("choose_grace")(delays, 0.29) == 71  # drops 72..100: 29 records


def test_smallest_grace_within_the_loss_on_random_delays():
    """On random delays, the grace keeps the loss within max_loss and one ms less would not."""
    choose = exercise("choose_grace")
    rng = random.Random(2)
    for _ in range(200):
        delays = [int(rng.expovariate(1 / 3000)) if rng.random() < 0.6 else 0 for _ in range(50)]
        max_loss = rng.choice([0.0, 0.02, 0.1, 0.3, 0.5])
        grace = choose(delays, max_loss)
        assert dropped(delays, grace) / len(delays) <= max_loss
        if grace > 0:
            assert dropped(delays, grace - 1) / len(delays) > max_loss


def test_a_loss_outside_0_and_1_is_refused():
    """max_loss is a share: -0.1 or 5 (meaning 5%?) raise ValueError."""
    choose = exercise("choose_grace")
    for bad in (-0.1, 5):
        with pytest.raises(ValueError):
            choose([0, 10], bad)
