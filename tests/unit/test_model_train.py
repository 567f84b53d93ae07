"""Time split, candidates, ONNX export and its check, thresholds, and the version record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rtml.features.definitions import MS_PER_DAY
from rtml.model.build import build
from rtml.model.dataset import INPUTS, training_set
from rtml.model.export import (
    check_equal,
    choose_thresholds,
    onnx_scores,
    rates_at,
    threshold_at_precision,
    to_onnx,
)
from rtml.model.train import (
    FOREST,
    KINDS,
    LOGREG,
    fraud_probability,
    make_model,
    matrix,
    time_split,
)
from rtml.model.update import ModelError, ModelUpdate, Scorer, decode_features
from rtml.simulate import SimulationParams, simulate


@pytest.fixture(scope="module")
def frame():
    sim = simulate(SimulationParams(n_customers=200, n_terminals=400, n_days=40, seed=11))
    return training_set(sim)


@pytest.fixture(scope="module")
def trained(frame):
    return build(frame, {"kind": "simulation", "rows": len(frame)}, train_days=14)


def _days(first: int, last: int) -> pd.DataFrame:
    """One transaction at noon on each day, labelled a week later."""
    t = np.arange(first, last + 1) * MS_PER_DAY + MS_PER_DAY // 2
    return pd.DataFrame({"event_time_ms": t, "label_time_ms": t + 7 * MS_PER_DAY})


def test_split_ends_with_the_last_day_and_leaves_a_label_delay_gap() -> None:
    split = time_split(_days(100, 139), train_days=14, test_days=7)
    assert split.test_end_ms == 140 * MS_PER_DAY
    assert split.test_start_ms == 133 * MS_PER_DAY
    assert split.train_end_ms == 126 * MS_PER_DAY  # a 7-day gap before testing
    assert split.train_start_ms == 112 * MS_PER_DAY
    rows = _days(100, 139)
    assert split.train_mask(rows).sum() == 14 and split.test_mask(rows).sum() == 7
    assert split.describe()["test"] == "1970-05-14 to 1970-05-21"


def test_a_training_row_whose_label_came_after_testing_began_is_left_out() -> None:
    rows = _days(100, 139)
    split = time_split(rows, train_days=14, test_days=7)
    late = rows.copy()
    late.loc[late.index[20], "label_time_ms"] = split.test_start_ms + 1  # day 120: train window
    assert split.train_mask(late).sum() == 13
    assert not split.train_mask(late)[20]


def test_too_short_a_history_is_a_sentence() -> None:
    with pytest.raises(ModelError, match=r"covers 20 day.*needs 28"):
        time_split(_days(0, 19), train_days=14, test_days=7)


def test_unknown_model_kind_is_refused() -> None:
    with pytest.raises(ModelError, match="no model kind 'svm'"):
        make_model("svm")


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_export_scores_as_scikit_learn_does_even_with_missing_values(frame, kind) -> None:
    rows = frame.iloc[::7]
    x = matrix(rows)
    model = make_model(kind).fit(x, rows["tx_fraud"].to_numpy())
    x[::3, INPUTS.index("terminal_distance")] = np.nan  # the stream's unknown profiles
    onnx = to_onnx(model, len(INPUTS))
    reference = fraud_probability(model, x)
    assert check_equal(onnx, reference, x) <= 1e-5
    assert np.all(np.isfinite(onnx_scores(onnx, x)))


def test_an_export_that_scores_differently_is_refused(frame) -> None:
    rows = frame.iloc[::7]
    x = matrix(rows)
    model = make_model(LOGREG).fit(x, rows["tx_fraud"].to_numpy())
    reference = fraud_probability(model, x)
    reference[5] += 1e-3
    with pytest.raises(ModelError, match="not published"):
        check_equal(to_onnx(model, len(INPUTS)), reference, x)


def test_thresholds_are_the_lowest_scores_reaching_each_precision() -> None:
    y = np.array([0, 0, 1, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.7, 0.8, 0.9])
    # At >= 0.7 all 3 flagged are frauds (1.0); at >= 0.4, 3 of 4; at >= 0.3, 4 of 5 ...
    assert threshold_at_precision(y, s, 0.9) == pytest.approx(0.7)
    assert threshold_at_precision(y, s, 0.75) == pytest.approx(0.3)
    assert threshold_at_precision(y, s, 0.5) == pytest.approx(0.1)  # 4 of 7 >= 0.5
    assert threshold_at_precision(np.array([1, 0]), np.array([0.2, 0.9]), 0.9) == 1.0
    review, decline = choose_thresholds(y, s, review_precision=0.75, decline_precision=0.9)
    assert (review, decline) == (pytest.approx(0.3), pytest.approx(0.7))
    assert rates_at(y, s, 0.7) == {"precision": 1.0, "recall": 0.75, "flagged": 3 / 7}


def test_a_built_version_passes_the_services_gate_and_decides(trained, frame) -> None:
    assert {c.kind for c in trained.candidates} == {LOGREG, FOREST}
    assert trained.chosen.metrics["average_precision"] == max(
        c.metrics["average_precision"] for c in trained.candidates
    )
    assert trained.onnx_max_diff <= 1e-5
    assert 0 <= trained.review_threshold <= trained.decline_threshold <= 1
    update = trained.update("v0042")
    again = ModelUpdate.from_record(update.to_record())
    scorer = Scorer.load(again)
    assert scorer.version == "v0042" and scorer.features == INPUTS
    # The service's path (records -> decode_features -> ONNX) scores as the model card says.
    test = frame[trained.split.test_mask(frame)]
    records = test.reset_index().to_dict("records")
    scores = scorer.score(decode_features(records, update.features))
    np.testing.assert_allclose(scores, trained.chosen.scores, atol=1e-5)
    decisions = update.decide(scores)
    assert set(decisions) <= {"APPROVE", "REVIEW", "DECLINE"}
    assert (decisions == "DECLINE").sum() == (scores >= trained.decline_threshold).sum()
