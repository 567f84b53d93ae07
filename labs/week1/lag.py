"""Week 1 exercise: the consumer lag of one partition.

Every record in a partition has an offset: its position in that partition's log, 0, 1, 2,
... Three offsets describe where a consumer group stands:

- the log start offset: the oldest record still stored. Retention deletes old records,
  so it moves up over time; it is not always 0.
- the log end offset: the offset the *next* record will get, one past the last record
  written. An empty partition has log start == log end.
- the committed offset: what the group saved as "the next record I will read". A group
  that has read offsets 0..9 commits 10. A group that never committed has none (None):
  when it starts it follows its `auto.offset.reset` policy; rtml's consumers use
  `earliest`, so they start at the log start.

Lag is how many records the group still has to read. It is counted in records, not in
seconds, because offsets are all Kafka stores about progress: to turn it into time you
need a rate (records per second), and that changes all day.
"""

from __future__ import annotations


def partition_lag(committed: int | None, log_start: int, log_end: int) -> int:
    """Return how many records of this partition the group has not read yet.

    `committed` is the group's committed offset (None if it has never committed),
    `log_start` the oldest stored offset, `log_end` the offset the next record will get.
    Example: committed 40, log start 0, log end 100 -> 60 records to read (40..99).

    Think about:
    - A group committed at the log end has read everything: its lag is 0.
    - A group with no commit starts at the log start (auto.offset.reset=earliest).
    - If retention deleted records the group never read, the committed offset can be below
      the log start. Those records are gone; the group resumes at the log start, so count
      from there.
    - If the topic was deleted and created again, an old commit can be beyond the log end.
      Lag is never negative.
    """
    raise NotImplementedError(
        "TODO week 1: find the offset the group resumes at (mind None and retention), "
        "then count the records from there to log_end"
    )
