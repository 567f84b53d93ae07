"""Week 2 reference: the four functions of a "distinct values" window aggregator."""

from __future__ import annotations

from typing import Any


def distinct_initialize() -> list:
    """An empty window has seen no value: the empty list."""
    return []


def distinct_agg(state: list, value: Any) -> list:
    """The sorted distinct values after `value`; None and repeats leave the state as it is."""
    if value is None or value in state:
        return state
    return sorted([*state, value])


def distinct_merge(a: list, b: list) -> list:
    """The sorted union of two sessions' values."""
    return sorted(set(a) | set(b))


def distinct_result(state: list) -> int:
    """How many distinct values the window saw."""
    return len(state)
