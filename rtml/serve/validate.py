"""Which features records may be scored, and the decision for those that may not.

A features record that decodes has every field with its Avro type (the schema sees to
that), but it can still carry values no feature computation produces: a negative or
non-finite amount, a count below zero, a fraud risk outside [0, 1], NaN. A model given
numbers outside what it was trained on still answers, confidently and meaninglessly, so
such a record is not scored. It gets the safe decision instead: REVIEW (a human looks)
with score NaN ("not scored"), because the transaction still needs exactly one decision
and a DLQ entry would leave it waiting for none. Only a record that does not decode at
all (no transaction id to key a prediction by) goes to `serve.dlq`.

The ranges follow the features schema's meaning:

- counts (`*_nb_tx_*`) are whole numbers >= 0;
- amounts (`tx_amount`, `customer_avg_amount_*`) are finite and >= 0;
- risks (`terminal_risk_*`) are shares of frauds, in [0, 1];
- `terminal_distance` may be null (a profile is unknown): that is only a problem when the
  model takes it as an input; when present it is finite and >= 0.

A score the model gives that is not a finite number is REVIEW too: comparing NaN with
the thresholds would otherwise approve it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rtml.features.definitions import WINDOW_DAYS
from rtml.model.update import ModelUpdate

SAFE_DECISION = "REVIEW"
COUNTS = tuple(f"{who}_nb_tx_{d}d" for who in ("customer", "terminal") for d in WINDOW_DAYS)
AMOUNTS = ("tx_amount", *(f"customer_avg_amount_{d}d" for d in WINDOW_DAYS))
RISKS = tuple(f"terminal_risk_{d}d" for d in WINDOW_DAYS)
NULLABLE = ("terminal_distance",)
CHECKED = (*COUNTS, *AMOUNTS, *RISKS, *NULLABLE)
_UPPER = np.array([1.0 if c in RISKS else np.inf for c in CHECKED])


def problems(
    records: Sequence[Mapping[str, Any]], model_columns: Sequence[str]
) -> list[str | None]:
    """For each record, None if it may be scored, else a sentence naming what is wrong.

    Vectorised over the batch: one array for every checked field, one mask per rule, and
    a sentence only for the (rare) rows that fail.
    """
    if not records:
        return []
    values = _matrix(records)
    finite = np.isfinite(values)
    # A null terminal_distance is allowed unless the model needs it.
    may_be_null = np.array([c in NULLABLE and c not in model_columns for c in CHECKED])
    missing_ok = np.isnan(values) & may_be_null
    in_range = finite & (values >= 0) & (values <= _UPPER)
    bad = ~(in_range | missing_ok)
    out: list[str | None] = [None] * len(records)
    for row in np.flatnonzero(bad.any(axis=1)):
        out[row] = "; ".join(
            _sentence(CHECKED[col], records[row].get(CHECKED[col]))
            for col in np.flatnonzero(bad[row])
        )
    return out


def outcomes(
    update: ModelUpdate, scores: np.ndarray, reasons: Sequence[str | None]
) -> tuple[np.ndarray, np.ndarray]:
    """(score, decision) per record: the model's where it may be scored, else NaN/REVIEW.

    `scores` holds the model's score at each scorable row (anything at the others).
    """
    scores = np.asarray(scores, dtype=np.float64).copy()
    refused = np.fromiter((r is not None for r in reasons), dtype=bool, count=len(reasons))
    scores[refused] = np.nan
    decisions = update.decide(scores)
    decisions[~np.isfinite(scores)] = SAFE_DECISION
    return scores, decisions


def _matrix(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The checked fields of `records` as float64 (None or a missing field is NaN)."""
    try:
        rows = [tuple(r[c] for c in CHECKED) for r in records]
    except KeyError:
        rows = [tuple(r.get(c) for c in CHECKED) for r in records]
    return np.array(rows, dtype=np.float64).reshape(len(records), len(CHECKED))


def _sentence(column: str, value: Any) -> str:
    if value is None:
        return f"{column} is missing (the model needs it)"
    if column in RISKS:
        return f"{column} is {value!r}, not a share in [0, 1]"
    if column in COUNTS:
        return f"{column} is {value!r}, not a count >= 0"
    return f"{column} is {value!r}, not a finite number >= 0"
