"""Week 3 exercise: which labels a training run may use (point-in-time correctness).

A fraud label is not known when the payment happens: it arrives days later, when the
cardholder disputes the payment (a chargeback) or the bank confirms it was genuine. The
`labels` topic holds each label with its `label_time`, the moment it arrived.

A model trained at time T (the **cutoff**) can only have learnt from labels that had
arrived by T. A training set that uses a label stamped after T looks better offline than
the model will ever be in service: it has seen the future. This is **label leakage**, and
it is easy to commit by accident, because a replay of the log holds every label, the late
ones too. So `rtml.model.dataset` keeps only the labels known at the cutoff, and it asks
this function which ones those are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def labels_known_at(
    label_times_ms: Sequence[int] | np.ndarray, cutoff_ms: int | None
) -> np.ndarray:
    """Return a boolean mask, one entry per label: True where a run at `cutoff_ms` may use it.

    `label_times_ms[i]` is when label i arrived (epoch ms). A label that arrived at or
    before the cutoff is known (`label_time <= cutoff`: a label stamped exactly at the
    cutoff is in); a later one is not. `cutoff_ms` None means "no cutoff": every label.
    Example: label times [100, 200, 300] and cutoff 200 -> [True, True, False].

    Think about:
    - The result is used to select rows of a pandas frame, so it must be a numpy array of
      dtype bool with exactly one entry per label, in the same order.
    - No labels at all is not an error: an empty mask.
    - Work on the whole array at once (numpy compares arrays element by element): a
      month of labels is hundreds of thousands of rows.
    """
    raise NotImplementedError(
        "TODO week 3: compare every label time with the cutoff (inclusive) as one numpy "
        "array; all True when there is no cutoff"
    )
