"""How late each record arrived, as the feature app judges it.

The app keeps, per key, the latest event time it has seen. A record whose event time lies
more than the grace period behind that time is late (`transactions.late`). So a record's
*delay* is how far behind its key's latest event time it arrived: measured from the
records in the order a partition delivers them, it says exactly which records any grace
period would drop. The week 2 exercise `choose_grace` picks a grace period from delays.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from rtml.features.errors import FeatureError


def arrival_delays(keys: Sequence[Hashable], event_times_ms: Sequence[int]) -> list[int]:
    """Per record, in arrival order: ms behind the latest event time of its key seen before
    it (0 for a record that is not behind)."""
    if len(keys) != len(event_times_ms):
        raise FeatureError(
            f"Got {len(keys)} keys but {len(event_times_ms)} event times: one of each per record."
        )
    latest: dict[Hashable, int] = {}
    delays = []
    for key, t in zip(keys, event_times_ms, strict=True):
        seen = latest.get(key)
        delays.append(max(seen - t, 0) if seen is not None else 0)
        latest[key] = t if seen is None else max(seen, t)
    return delays


def dropped(delays_ms: Sequence[int], grace_ms: int) -> int:
    """How many of the records a grace period of `grace_ms` drops (delay > grace)."""
    return sum(d > grace_ms for d in delays_ms)
