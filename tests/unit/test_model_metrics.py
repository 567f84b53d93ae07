"""The evaluation metrics on cases small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rtml.features.definitions import MS_PER_DAY
from rtml.model.evaluate import average_precision, card_precision_at_k, evaluate, roc_auc
from rtml.model.update import ModelError

Y = np.array([0, 0, 1, 1])
S = np.array([0.1, 0.4, 0.35, 0.8])


def test_roc_auc_counts_the_pairs_ranked_right() -> None:
    # Fraud/genuine pairs: (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4): 3 of 4.
    assert roc_auc(Y, S) == pytest.approx(0.75)
    assert roc_auc(Y, -S) == pytest.approx(0.25)


def test_average_precision_is_the_mean_precision_at_each_fraud() -> None:
    # Ranked: 0.8 (fraud, precision 1/1), 0.4, 0.35 (fraud, precision 2/3): mean 5/6.
    assert average_precision(Y, S) == pytest.approx(5 / 6)
    assert average_precision(Y, np.array([0.0, 0.1, 0.8, 0.9])) == pytest.approx(1.0)


def test_one_class_is_refused_with_a_sentence() -> None:
    with pytest.raises(ModelError, match="only one class"):
        roc_auc(np.zeros(3), np.array([0.1, 0.2, 0.3]))


def _day(day: int, rows: list[tuple[int, float, int]]) -> list[dict]:
    return [
        {"event_time_ms": day * MS_PER_DAY + 1000 * i, "customer_id": c, "score": s, "tx_fraud": f}
        for i, (c, s, f) in enumerate(rows)
    ]


def test_card_precision_ranks_cards_by_their_best_score_and_blocks_detected_ones() -> None:
    rows = pd.DataFrame(
        _day(
            100,
            [
                (1, 0.9, 1),  # card 1: fraud, top score -> detected, blocked afterwards
                (2, 0.8, 0),
                (3, 0.1, 1),  # a fraud ranked too low to be checked
                (4, 0.3, 1),  # card 4: its fraud scores low ...
                (4, 0.2, 0),
            ],
        )
        + _day(101, [(1, 0.95, 1), (3, 0.9, 1), (2, 0.7, 0)])
    )
    scores = rows.pop("score").to_numpy()
    # Day 100, k=2: cards 1 (0.9, fraud) and 2 (0.8) -> 1/2.
    # Day 101: card 1 is blocked, so cards 3 (fraud) and 2 -> 1/2. Mean 0.5.
    assert card_precision_at_k(rows, scores, k=2) == pytest.approx(0.5)
    # Without blocking, day 101 checks cards 1 and 3, both frauds: (0.5 + 1) / 2.
    assert card_precision_at_k(rows, scores, k=2, remove_detected=False) == pytest.approx(0.75)
    # k=3 on day 100: cards 1, 2, then 4 (best score 0.3, and it had a fraud that day) -> 2/3.
    # Day 101: cards 3 and 2 only, still divided by 3 -> 1/3.
    assert card_precision_at_k(rows, scores, k=3) == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_card_precision_divides_by_k_even_on_a_quiet_day() -> None:
    rows = pd.DataFrame(_day(7, [(5, 0.5, 1)]))
    assert card_precision_at_k(rows, rows.pop("score").to_numpy(), k=100) == pytest.approx(0.01)


def test_evaluate_reports_every_metric_and_the_fraud_rate() -> None:
    frame = pd.DataFrame(
        _day(3, [(i, s, int(y)) for i, (s, y) in enumerate(zip(S, Y, strict=True))])
    )
    out = evaluate(frame.drop(columns="score"), S, k=2)
    assert out == {
        "roc_auc": pytest.approx(0.75),
        "average_precision": pytest.approx(5 / 6),
        "card_precision_at_2": pytest.approx(0.5),  # cards 3 (0.8, fraud) and 1 (0.4)
        "fraud_rate": pytest.approx(0.5),
    }
