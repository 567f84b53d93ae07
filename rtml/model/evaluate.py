"""How good a fraud model is on a held-out window: the Fraud Detection Handbook's metrics.

- ROC AUC: the chance that a random fraud scores above a random genuine transaction;
  0.5 is chance. Blind to class imbalance, so it looks good easily.
- Average precision (area under the precision-recall curve): chance level is the fraud
  rate, so it shows how hard the imbalanced problem is.
- Card precision@100: investigators can check about 100 cards a day. Each day, rank the
  cards by their highest score that day, take the top 100, and count the share that had a
  fraud that day; average over the days. A card found compromised is blocked, so it leaves
  the ranking of the following days (as in the handbook), and the denominator stays 100
  even on a day with fewer cards: unused capacity is not precision.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from rtml.features.definitions import MS_PER_DAY
from rtml.model.update import ModelError

TOP_K = 100


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; needs both classes in `y`."""
    _both_classes(y)
    return float(roc_auc_score(y, scores))


def average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve (sklearn's step-wise average precision)."""
    _both_classes(y)
    return float(average_precision_score(y, scores))


def card_precision_at_k(
    frame: pd.DataFrame, scores: np.ndarray, k: int = TOP_K, remove_detected: bool = True
) -> float:
    """Mean over days of the share of frauds among the `k` highest-scored cards of the day.

    `frame` has event_time_ms, customer_id and tx_fraud, one row per transaction, aligned
    with `scores`. A card's score on a day is its highest transaction score that day, and
    it counts as a fraud if any of its transactions that day was one.
    """
    if len(frame) != len(scores):
        raise ModelError(f"{len(scores)} scores for {len(frame)} transactions.")
    if frame.empty:
        raise ModelError("Card precision needs at least one transaction.")
    cards = pd.DataFrame(
        {
            "day": frame["event_time_ms"].to_numpy() // MS_PER_DAY,
            "card": frame["customer_id"].to_numpy(),
            "score": np.asarray(scores, dtype=float),
            "fraud": frame["tx_fraud"].to_numpy().astype(bool),
        }
    )
    per_day = cards.groupby(["day", "card"], sort=True).max()
    blocked: set[int] = set()
    precisions = []
    for _, day in per_day.groupby(level="day", sort=True):
        day = day.droplevel("day")
        if remove_detected:
            day = day[~day.index.isin(list(blocked))]
        # Ties broken by card id, so the metric does not depend on row order.
        top = day.sort_values(["score"], ascending=False, kind="stable").head(k)
        caught = top.index[top["fraud"].to_numpy()]
        blocked.update(int(c) for c in caught)
        precisions.append(len(caught) / k)
    return float(np.mean(precisions))


def evaluate(frame: pd.DataFrame, scores: np.ndarray, k: int = TOP_K) -> dict[str, float]:
    """Every metric of `scores` on the labelled rows `frame` (see `card_precision_at_k`)."""
    y = frame["tx_fraud"].to_numpy()
    return {
        "roc_auc": roc_auc(y, scores),
        "average_precision": average_precision(y, scores),
        f"card_precision_at_{k}": card_precision_at_k(frame, scores, k),
        "fraud_rate": float(np.mean(y)),
    }


def _both_classes(y: np.ndarray) -> None:
    if len(np.unique(y)) != 2:
        raise ModelError(
            "The evaluation window holds only one class (all frauds or none): "
            "use a longer test window or a larger history."
        )
