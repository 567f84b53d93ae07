"""Week 2 reference: the smallest grace period that keeps the share of late records small."""

from __future__ import annotations

from collections.abc import Sequence


def choose_grace(delays_ms: Sequence[int], max_loss: float) -> int:
    """The smallest grace (ms) that drops at most `max_loss` of the records.

    A record is dropped when its delay exceeds the grace, so dropping the k largest delays
    means a grace equal to the (k + 1)-th largest one. k is the largest count whose share
    stays within `max_loss`, computed with the same division the check uses, so floating
    point cannot make it one too many or too few.
    """
    if not 0.0 <= max_loss <= 1.0:
        raise ValueError(f"max_loss must be a share between 0 and 1, not {max_loss!r}.")
    n = len(delays_ms)
    largest_first = sorted(delays_ms, reverse=True)
    may_drop = 0
    while may_drop < n and (may_drop + 1) / n <= max_loss:
        may_drop += 1
    if may_drop == n:
        return 0
    return max(int(largest_first[may_drop]), 0)
