"""Week 2 exercise: how long to wait for late data.

Events do not reach Kafka in the order they happened: a phone was offline, a terminal
batches its uploads, a producer retried. A stream processor works in *event time* (when the
payment happened), so for every key it must decide how long to keep a window open for
stragglers. That wait is the **grace period**:

- the feature app tracks, per customer, the latest event time it has seen;
- a transaction that arrives with an event time more than `grace` ms behind that latest
  time is **late**: it goes to `transactions.late` and no window counts it;
- anything within the grace period is still counted, in its right place in the history.

So each record has a *delay*: how far (ms) its event time lies behind the latest event time
of its key seen before it arrived (0 for a record that arrived in order; see
`rtml.features.lateness.arrival_delays`). A record is dropped exactly when its delay is
greater than the grace period.

A long grace loses fewer records, but every window closes (and every result is final) that
much later, and state is held longer. The usual way to choose is from measured delays: the
smallest grace that loses at most an acceptable share of the records.
"""

from __future__ import annotations

from collections.abc import Sequence


def choose_grace(delays_ms: Sequence[int], max_loss: float) -> int:
    """Return the smallest grace period (ms, >= 0) that drops at most `max_loss` of the records.

    `delays_ms` holds each record's delay (ms behind the latest event time of its key when it
    arrived; 0 if it was in order). With grace g, the records with delay > g are dropped;
    their share, dropped / len(delays_ms), must be <= `max_loss` (a fraction, 0.05 = 5%).
    Example: delays [0, 0, 500, 20_000] and max_loss 0.25 -> 500: one record in four may be
    lost (the one 20 s behind), and any grace below 500 ms would also drop the 500 ms one.

    Think about:
    - Sort the delays: if k records may be dropped, they should be the k largest ones.
    - How many is k? Count up while (k + 1) / n <= max_loss, rather than trusting
      `int(max_loss * n)`: 0.29 * 100 is 28.999999999999996 in floating point.
    - Ties: the grace is a delay itself; a record with delay == grace is kept.
    - No records at all, or nothing ever late: the answer is 0.
    - A `max_loss` outside [0, 1] is a mistake: raise ValueError saying so.
    """
    raise NotImplementedError(
        "TODO week 2: sort the delays, work out how many of the largest may be dropped, "
        "and return the largest delay that must be kept"
    )
