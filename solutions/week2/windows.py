"""Week 2 reference: a customer's transaction count and mean amount over a sliding window."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

MS_PER_DAY = 86_400_000


def customer_window(
    times: Sequence[int], amounts: Sequence[float], now_ms: int, days: int
) -> tuple[int, float]:
    """(count, mean amount) of the transactions with time in (now - days, now].

    Two binary searches find the window's ends in the sorted times; the amounts between
    them are summed oldest first, so the batch reference gets the same floating-point sum.
    """
    start = bisect_right(times, now_ms - days * MS_PER_DAY)
    end = bisect_right(times, now_ms)
    count = end - start
    if count == 0:
        return 0, 0.0
    total = 0.0
    for amount in amounts[start:end]:
        total += amount
    return count, total / count
