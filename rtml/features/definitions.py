"""The feature definitions, as pure functions both the stream and the batch path call.

Per transaction at event time t (milliseconds, UTC), after the Fraud Detection Handbook:

- `is_weekend`, `is_night` (hour <= 6);
- per customer, over the windows (t - d, t] for d in 1, 7, 30 days: the number of the
  customer's transactions and their mean amount, the current transaction included (a
  transaction with the same timestamp that came earlier in the customer's order is inside).
  This one is the week 2 exercise `customer_window`, so the app calls it through
  `rtml.impl.exercise` and a learner's version runs live;
- per terminal, over (t - delay - d, t - delay] with delay = 7 days: the number of the
  terminal's transactions and the share of them labelled fraud, counting only labels known
  at t (label time <= t). The window ends `delay` back because a fraud label arrives about a
  week after the payment: a window that reached up to t would always look clean.

Keeping these here, apart from Kafka and pandas, is what lets `rtml.features.batch` and the
streaming app agree to the last bit.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Sequence

MS_PER_DAY = 86_400_000
WINDOW_DAYS = (1, 7, 30)
LABEL_DELAY_DAYS = 7
NIGHT_LAST_HOUR = 6
# 1970-01-01 was a Thursday: day number + 3 is 0 on a Monday.
_MONDAY_OFFSET = 3

FEATURE_COLUMNS = (
    "is_weekend",
    "is_night",
    *(f"customer_{what}_{d}d" for d in WINDOW_DAYS for what in ("nb_tx", "avg_amount")),
    *(f"terminal_{what}_{d}d" for d in WINDOW_DAYS for what in ("nb_tx", "risk")),
)


def calendar_features(ts_ms: int) -> tuple[bool, bool]:
    """(is_weekend, is_night) of an event time in UTC."""
    day, ms_of_day = divmod(ts_ms, MS_PER_DAY)
    weekday = (day + _MONDAY_OFFSET) % 7
    return weekday >= 5, ms_of_day // 3_600_000 <= NIGHT_LAST_HOUR


def add_to_history(times: list[int], amounts: list[float], t: int, amount: float) -> None:
    """Add a customer's transaction at `t` to its sorted history, in place, and drop what no
    customer window can reach any more. A record out of order (within the grace period) is
    inserted after those with the same time, so `customer_window` counts it as the latest."""
    if not times or t >= times[-1]:
        times.append(t)
        amounts.append(amount)
    else:
        at = bisect_right(times, t)
        insort(times, t)
        amounts.insert(at, amount)
    cut = bisect_right(times, t - max(WINDOW_DAYS) * MS_PER_DAY)
    if cut:
        del times[:cut]
        del amounts[:cut]


def terminal_window(
    tx_times: Sequence[int], frauds: Sequence[int], now_ms: int, days: int
) -> tuple[int, float]:
    """(count, fraud risk) of a terminal's labelled transactions in (now-delay-days, now-delay].

    `tx_times` (sorted) and `frauds` (0/1) describe the labels known at `now_ms`. Risk is
    frauds / count, and 0 for a window without transactions.
    """
    end_ms = now_ms - LABEL_DELAY_DAYS * MS_PER_DAY
    start = bisect_right(tx_times, end_ms - days * MS_PER_DAY)
    end = bisect_right(tx_times, end_ms)
    count = end - start
    if count == 0:
        return 0, 0.0
    return count, sum(frauds[start:end]) / count


def horizon_ms(now_ms: int) -> int:
    """The oldest event time any window at `now_ms` can still need: older state can go."""
    return now_ms - (LABEL_DELAY_DAYS + max(WINDOW_DAYS)) * MS_PER_DAY
