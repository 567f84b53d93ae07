"""Week 1 reference: consumer lag of one partition, in records."""

from __future__ import annotations


def partition_lag(committed: int | None, log_start: int, log_end: int) -> int:
    """Records between where the group resumes and the end of the log; never negative.

    With no commit the group starts at the log start (auto.offset.reset=earliest); a commit
    below the log start resumes there too, because retention deleted what lay before it.
    """
    resume = log_start if committed is None else max(committed, log_start)
    return max(0, log_end - resume)
