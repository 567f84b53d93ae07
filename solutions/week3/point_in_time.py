"""Week 3 reference: which labels a training run at a cutoff may use."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def labels_known_at(
    label_times_ms: Sequence[int] | np.ndarray, cutoff_ms: int | None
) -> np.ndarray:
    """True for each label that had arrived by `cutoff_ms` (inclusive); all True without one."""
    times = np.asarray(label_times_ms, dtype=np.int64)
    if cutoff_ms is None:
        return np.ones(len(times), dtype=bool)
    return times <= cutoff_ms
