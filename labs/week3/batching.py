"""Week 3 exercise: score a micro-batch with one model call.

The prediction service takes whatever features records have arrived (up to 500) and
scores them together. Calling the model costs a fixed amount per call (Python to C++,
input checks, thread hand-off) plus a little per row, so 500 rows in one call take about
as long as a handful of calls of one row: batching is how one process keeps up with
thousands of payments per second.

Not every record of a batch may be scored: one with a negative amount or a risk outside
[0, 1] is refused by `rtml.serve.validate` (it gets the safe decision REVIEW and no
score). The batch's valid rows still go to the model together, in one call. With
RTML_IMPL=labs the running service (`rtml serve run`) scores every batch with your
function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def score_batch(
    score: Callable[[np.ndarray], np.ndarray], rows: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """Return one score per row: the model's for the valid rows, NaN for the others.

    `score` is the model: it takes an [m, k] float32 array and returns m probabilities.
    `rows` is the batch's [n, k] float32 input (invalid rows may hold anything, NaN
    included); `valid` is a boolean mask of length n. The result is a float64 array of
    length n. Example: rows [[1], [2], [3]], valid [True, False, True] -> the model is
    called once, on [[1], [3]], and the result is [s1, nan, s3].

    Think about:
    - Call `score` exactly once, on the valid rows only and in their order: never row by
      row (that is what batching avoids), and never on an invalid row (the model would
      answer confidently about numbers it has never seen).
    - A batch with no valid row makes no call at all.
    - Boolean indexing (`rows[valid]`) selects and assigns many rows at once.
    """
    raise NotImplementedError(
        "TODO week 3: start from an array of NaN, score rows[valid] in one call and put "
        "the scores back at the valid positions"
    )
