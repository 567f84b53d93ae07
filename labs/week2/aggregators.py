"""Week 2 exercise: a custom window aggregator, "how many different values".

Quix Streams (like Kafka Streams and Flink) aggregates a window without keeping its
records: each window holds one small *state*, updated as records arrive, and turned into
the result when the window closes. An aggregator is four functions:

- `initialize()`: the state of an empty window;
- `agg(state, value)`: the state after one more value;
- `merge(a, b)`: one state from two. Session windows need it: a late record can fall into
  the gap between two sessions and join them into one, and then their states must combine;
- `result(state)`: what the closed window reports.

The state lives in the state store (RocksDB) and its changelog topic, so it must be plain
JSON (lists, numbers, strings) and should stay small.

Here: the number of *distinct* values a window saw, for example how many different
customers paid at a terminal in an hour (many customers at one terminal in a short time is
how a compromised terminal looks). `rtml.features.windows.DistinctValues` calls your four
functions for the terminals' hourly windows when RTML_IMPL=labs; the control room's Windows
page and the `windows` topic then show your results.
"""

from __future__ import annotations

from typing import Any


def distinct_initialize() -> list:
    """Return the state of a window that has seen no value yet.

    The state is the sorted list of the distinct values seen so far (a list, not a set:
    the state store keeps JSON, which has no sets).
    """
    raise NotImplementedError("TODO week 2: what does an empty window's state look like?")


def distinct_agg(state: list, value: Any) -> list:
    """Return the state after the window sees `value`.

    `state` is a sorted list of distinct values. A value already in it changes nothing; a
    new one is added in its sorted place. `None` (a record without the field) is not a
    value: ignore it. Example: state [3, 9], value 5 -> [3, 5, 9]; value 9 -> [3, 9].

    Return a new list rather than changing `state` in place: the caller may still hold the
    old one (the store writes what you return).
    """
    raise NotImplementedError(
        "TODO week 2: return the state unchanged for None or a value seen before, else a "
        "new sorted list with the value added"
    )


def distinct_merge(a: list, b: list) -> list:
    """Return one state from the states `a` and `b` of two sessions being merged.

    Both are sorted lists of distinct values, and a value can be in both (the same customer
    in each session). The merged state is the sorted union. Example: [3, 9] and [5, 9] ->
    [3, 5, 9]. Merging must give the same answer as if one window had seen every record.
    """
    raise NotImplementedError("TODO week 2: the sorted union of the two states")


def distinct_result(state: list) -> int:
    """Return what the closed window reports: how many distinct values it saw.

    Example: state [3, 5, 9] -> 3; an empty window's state -> 0.
    """
    raise NotImplementedError("TODO week 2: turn the state into the window's result")
