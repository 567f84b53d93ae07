"""Grading: week 4, first_delivery (labs/week4/idempotence.py)."""

import random
from collections import OrderedDict

import pytest

from rtml.cards.notifications import SeenIds
from rtml.impl import exercise

pytestmark = pytest.mark.grading


def test_the_docstring_example():
    """Window 2: e1 new, e1 again a duplicate, e2 and e3 new, and e1 is then forgotten."""
    first = exercise("first_delivery")
    seen: dict[str, None] = {}
    assert first(seen, "e1#0", 2) is True
    assert first(seen, "e1#0", 2) is False
    assert first(seen, "e2#0", 2) is True
    assert first(seen, "e3#0", 2) is True
    assert list(seen) == ["e2#0", "e3#0"]


def test_a_new_id_is_remembered_in_place():
    """A first delivery adds its id to `seen` itself (the caller keeps that mapping)."""
    seen: OrderedDict[str, None] = OrderedDict()
    assert exercise("first_delivery")(seen, "a#0", 10) is True
    assert list(seen) == ["a#0"]


def test_a_duplicate_changes_nothing():
    """A repeat answers False and leaves `seen` exactly as it was (same ids, same order)."""
    first = exercise("first_delivery")
    seen: dict[str, None] = {}
    for message_id in ("a", "b", "c"):
        first(seen, message_id, 10)
    assert first(seen, "a", 10) is False
    assert list(seen) == ["a", "b", "c"]


def test_the_oldest_ids_are_forgotten_beyond_the_window():
    """After 10 new ids with window 3, only the last 3 are remembered, oldest first."""
    first = exercise("first_delivery")
    seen: dict[str, None] = {}
    assert all(first(seen, f"id{i}", 3) for i in range(10))
    assert list(seen) == ["id7", "id8", "id9"]
    assert first(seen, "id2", 3) is True  # forgotten, so new again


def test_memory_stays_bounded_on_a_long_stream():
    """100,000 deliveries, duplicates among them: `seen` never holds more than the window."""
    first = exercise("first_delivery")
    rng = random.Random(5)
    seen: OrderedDict[str, None] = OrderedDict()
    for i in range(100_000):
        first(seen, f"e{rng.randrange(i + 1)}#0", 1_000)
        assert len(seen) <= 1_000


def test_an_at_least_once_log_is_deduplicated():
    """Events redelivered soon after their originals: each let through once, in order.

    An at-least-once card service that crashes before a commit writes some events again
    shortly after the originals; exactly one of each must pass, in first-arrival order."""
    first = exercise("first_delivery")
    rng = random.Random(7)
    ids = [f"cmd-{i}#0" for i in range(2_000)]
    delivered = []
    for i, message_id in enumerate(ids):
        delivered.append(message_id)
        if rng.random() < 0.2:  # a redelivery of one of the last 50
            delivered.append(ids[rng.randrange(max(0, i - 50), i + 1)])
    seen: dict[str, None] = {}
    kept = [m for m in delivered if first(seen, m, 500)]
    assert kept == ids


def test_the_notification_services_memory_uses_it():
    """SeenIds (the notification service's memory) skips duplicates with your function."""
    seen = SeenIds(window=2)
    assert [seen.first_time(i) for i in ("a", "b", "a", "c", "a")] == [
        True,
        True,
        False,
        True,
        True,  # "a" fell out of the window when "c" came
    ]
    assert list(seen.ids) == ["c", "a"]
