"""Week 2 exercise: a sliding window over one customer's history, kept in state.

Stream processors keep state per key. The feature app keeps, for each customer, the event
times and amounts of their transactions of the last 30 days, sorted by time, in RocksDB
(backed by a changelog topic, so it survives a crash). When a transaction arrives it is
appended and this function is asked, for 1, 7 and 30 days, how many transactions the
customer made in the window ending now, and their mean amount. Your function runs inside
the feature app when RTML_IMPL=labs, and the stream == batch test checks it against the
pandas reference on a whole history.

Window edges matter. The window is (now - days, now]: open at the start, closed at the
end. So a transaction exactly one day old is *not* in the 1-day window, and the current
transaction (time == now) is in every window. Times are milliseconds since 1970 (UTC).
"""

from __future__ import annotations

from collections.abc import Sequence

MS_PER_DAY = 86_400_000


def customer_window(
    times: Sequence[int], amounts: Sequence[float], now_ms: int, days: int
) -> tuple[int, float]:
    """Return (count, mean amount) of the transactions with time in (now_ms - days, now_ms].

    `times` is sorted ascending and `amounts[i]` belongs to `times[i]`; the history ends at
    the current transaction, so `times[-1] == now_ms`. With no transaction in the window,
    return (0, 0.0). Example: times [0, 86_400_000], amounts [10.0, 30.0], now 86_400_000,
    days 1 -> (1, 30.0), because the transaction at 0 is exactly one day old.

    Think about:
    - `bisect.bisect_right` finds the first index whose time is > a value, in O(log n).
    - Sum the amounts oldest first: the batch reference does, and floating-point addition
      depends on order (the test allows only 1e-9).
    """
    raise NotImplementedError(
        "TODO week 2: find where the window starts and ends in `times`, then count and "
        "average the amounts in between"
    )
