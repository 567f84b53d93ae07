"""Online evaluation without a broker: metrics against scikit-learn, PSI, the label join."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, precision_score, recall_score

from rtml.model.online import (
    DAY_MS,
    EvaluationError,
    LabelJoin,
    OnlineEvaluator,
    average_precision,
    classification_metrics,
    drift_level,
    drift_table,
    psi,
    sliding_windows,
)


def _random_case(seed: int, n: int = 2_000):
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.1
    # Scores that separate the classes somewhat, rounded so that ties occur.
    score = np.round(np.clip(rng.normal(0.3 + 0.3 * fraud, 0.2), 0, 1), 2)
    flagged = score >= 0.5
    return fraud, score, flagged


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_metrics_equal_scikit_learn(seed):
    fraud, score, flagged = _random_case(seed)
    m = classification_metrics(fraud, score, flagged)
    assert m.precision == pytest.approx(precision_score(fraud, flagged))
    assert m.recall == pytest.approx(recall_score(fraud, flagged))
    assert m.average_precision == pytest.approx(average_precision_score(fraud, score))
    assert (m.n, m.frauds, m.flagged) == (fraud.size, fraud.sum(), flagged.sum())


def test_undefined_metrics_are_nan_not_zero():
    m = classification_metrics(np.array([False, False]), np.array([0.1, 0.2]), [False, False])
    assert math.isnan(m.precision) and math.isnan(m.recall)
    assert math.isnan(average_precision(np.array([False]), np.array([0.5])))


def test_unscored_reviews_are_left_out_of_the_ranking_but_counted_as_flagged():
    fraud, score, flagged = _random_case(4)
    unscored = np.arange(fraud.size) % 10 == 0  # invalid input: REVIEW with score NaN
    m = classification_metrics(fraud, np.where(unscored, np.nan, score), flagged | unscored)
    assert m.average_precision == pytest.approx(
        average_precision_score(fraud[~unscored], score[~unscored])
    )
    assert m.recall == pytest.approx(recall_score(fraud, flagged | unscored))


def test_sliding_windows_equal_metrics_on_each_slice():
    fraud, score, flagged = _random_case(4, n=3_000)
    rng = np.random.default_rng(4)
    times = rng.integers(0, 10 * DAY_MS, fraud.size)
    joined = pd.DataFrame({"tx_time": times, "score": score, "flagged": flagged, "fraud": fraud})
    windows = sliding_windows(joined, 2 * DAY_MS, DAY_MS)
    assert list(windows["window_end"]) == [DAY_MS * k for k in range(1, 11)]
    for row in windows.itertuples():
        inside = (times >= row.window_start) & (times < row.window_end)
        assert row.n == inside.sum()
        assert row.precision == pytest.approx(precision_score(fraud[inside], flagged[inside]))
        assert row.average_precision == pytest.approx(
            average_precision_score(fraud[inside], score[inside])
        )
    with pytest.raises(EvaluationError):
        sliding_windows(joined, 0, DAY_MS)


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(5)
    reference = rng.normal(0, 1, 50_000)
    same = rng.normal(0, 1, 50_000)
    moved = rng.normal(0.5, 1, 50_000)
    far = rng.normal(1.5, 1, 50_000)
    assert psi(reference, same) < 0.01
    assert drift_level(psi(reference, same)) == "stable"
    assert 0.1 <= psi(reference, moved) < 0.5
    assert drift_level(psi(reference, far)) == "major"
    assert math.isnan(psi(reference, np.array([])))


def test_psi_sees_more_missing_values_and_works_on_flags():
    reference = np.r_[np.ones(900), np.full(100, np.nan)]
    assert psi(reference, np.r_[np.ones(500), np.full(500, np.nan)]) > 0.25
    flags = np.r_[np.zeros(800), np.ones(200)]
    assert psi(flags, flags) == pytest.approx(0)
    assert psi(flags, np.r_[np.zeros(400), np.ones(600)]) > 0.25


def test_drift_table_names_the_column_that_moved():
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 5_000), "b": rng.normal(0, 1, 5_000)})
    cur = pd.DataFrame({"a": rng.normal(0, 1, 5_000), "b": rng.normal(2, 1, 5_000)})
    table = drift_table(ref, cur)
    assert list(table.index) == ["b", "a"]
    assert list(table["level"]) == ["major", "stable"]


def test_the_join_works_in_both_orders():
    join = LabelJoin(horizon_ms=1_000)
    assert join.add_prediction(1, 100, 0.9, True, "v1") is None
    late = join.add_label(1, 100, 600, True)
    assert (late.transaction_id, late.score, late.fraud, late.flagged) == (1, 0.9, True, True)
    assert join.add_label(2, 200, 700, False) is None  # the label comes first
    early = join.add_prediction(2, 200, 0.1, False, "v1")
    assert (early.transaction_id, early.fraud, early.model_version) == (2, False, "v1")
    assert join.counts.joined == 2
    assert (join.counts.pending_predictions, join.counts.pending_labels) == (0, 0)


def test_unmatched_records_expire_by_the_other_sides_clock_and_are_counted():
    join = LabelJoin(horizon_ms=1_000)
    join.add_prediction(1, 100, 0.5, True, "v1")  # its label never comes
    join.add_label(2, 150, 650, True)  # its prediction never comes
    # Labels reach 100 + 1000 only with label time 1101: until then prediction 1 waits.
    join.add_label(3, 1_000, 1_100, False)
    assert join.counts.expired_predictions == 0
    join.add_label(4, 1_050, 1_101, False)
    assert join.counts.expired_predictions == 1
    # Label 2 waits for predictions to pass 150 + 1000, however far the labels ran ahead.
    assert join.counts.orphan_labels == 0
    join.add_prediction(5, 1_151, 0.2, False, "v1")
    assert join.counts.orphan_labels == 1
    # Labels 3 and 4 are still waiting for their predictions.
    assert join.counts.pending_labels == 2
    # A label after its prediction expired is an orphan in its turn, not a match.
    assert join.add_label(1, 100, 1_200, True) is None
    join.add_prediction(6, 2_100, 0.2, False, "v1")
    assert join.counts.orphan_labels == 4  # labels 2, then 1, 3 and 4 (tx 1050 < 2100 - 1000)
    assert join.counts.pending_labels == 0


def test_duplicates_are_counted_and_the_first_prediction_wins():
    join = LabelJoin(horizon_ms=10_000)
    join.add_prediction(1, 100, 0.9, True, "v1")
    join.add_prediction(1, 100, 0.1, False, "v2")
    joined = join.add_label(1, 100, 200, True)
    assert joined.model_version == "v1"
    join.add_prediction(1, 100, 0.9, True, "v1")  # again, after the join
    join.add_label(1, 100, 300, True)
    assert (join.counts.duplicate_predictions, join.counts.duplicate_labels) == (2, 1)
    assert join.counts.pending_predictions == 0


def test_a_partition_running_ahead_expires_nothing():
    join = LabelJoin(horizon_ms=1_000)
    join.expect_partitions(predictions=1, labels=2)
    join.add_prediction(1, 100, 0.5, True, "v1")
    join.add_label(2, 5_000, 9_000, False, partition=0)  # partition 1 has not spoken yet
    assert join.counts.expired_predictions == 0
    join.add_label(3, 1_500, 1_101, False, partition=1)  # now both are past 100 + 1000
    assert join.counts.expired_predictions == 1


def test_state_is_bounded_by_size_too():
    join = LabelJoin(horizon_ms=10**9, max_pending=100)
    for tid in range(250):
        join.add_prediction(tid, tid, 0.5, False, "v1")
    assert join.counts.pending_predictions == 100
    assert join.counts.evicted == 150
    # The oldest went first: the newest ones still join.
    assert join.add_label(249, 249, 300, False) is not None
    assert join.add_label(0, 0, 300, False) is None


def _prediction(tid, t, score, decision="APPROVE"):
    return {
        "transaction_id": tid,
        "tx_datetime": t,
        "score": score,
        "decision": decision,
        "model_version": "v1",
    }


def _label(tid, t, fraud, delay=7 * DAY_MS):
    return {"transaction_id": tid, "tx_datetime": t, "label_time": t + delay, "tx_fraud": fraud}


def test_the_evaluator_reports_the_last_window_and_score_drift():
    rng = np.random.default_rng(8)
    evaluator = OnlineEvaluator(window_ms=DAY_MS, keep_ms=7 * DAY_MS)
    evaluator.join.expect_partitions(predictions=1, labels=3)
    n = 6_000
    times = np.sort(rng.integers(0, 6 * DAY_MS, n))
    fraud = rng.random(n) < 0.2
    # The scores move up after day 3: the drift signal must see it.
    score = np.clip(rng.normal(0.2 + 0.4 * fraud + 0.3 * (times > 3 * DAY_MS), 0.1), 0, 1)
    decision = np.where(score >= 0.6, "DECLINE", np.where(score >= 0.5, "REVIEW", "APPROVE"))
    for i in range(n):
        evaluator.add_prediction(_prediction(i, int(times[i]), score[i], decision[i]))
    # Three label partitions, each in time order, read one after the other: the labels of
    # partition 0 run days ahead of the others, and must not expire what they cannot match.
    for partition in range(3):
        for i in range(partition, n, 3):
            evaluator.add_label(_label(i, int(times[i]), bool(fraud[i])), partition)
    result = evaluator.current()
    inside = times >= times[-1] + 1 - DAY_MS
    flagged = decision != "APPROVE"
    assert result.metrics.n == inside.sum()
    assert result.metrics.precision == pytest.approx(
        precision_score(fraud[inside], flagged[inside])
    )
    assert result.metrics.recall == pytest.approx(recall_score(fraud[inside], flagged[inside]))
    assert result.metrics.average_precision == pytest.approx(
        average_precision_score(fraud[inside], score[inside])
    )
    reference = score[times < times[0] + DAY_MS]
    assert result.score_psi == pytest.approx(psi(reference, score[inside]))
    assert result.score_drift == "major"
    assert result.counts.joined == n
    assert len(evaluator.joined()) == n


def test_the_evaluator_uses_given_reference_scores():
    evaluator = OnlineEvaluator(window_ms=1_000, keep_ms=1_000, reference_scores=[0.1, 0.2, 0.3])
    for i in range(100):
        evaluator.add_prediction(_prediction(i, i, 0.2))
        evaluator.add_label(_label(i, i, False, delay=5))
    assert evaluator.current().score_psi > 0.25  # all in one bin of the three
    with pytest.raises(EvaluationError):
        OnlineEvaluator(window_ms=2, keep_ms=1)


def test_the_evaluator_keeps_only_what_its_window_needs():
    evaluator = OnlineEvaluator(window_ms=1_000, max_rows=5_000)
    for i in range(20_000):
        evaluator.add_prediction(_prediction(i, i, 0.5))
        evaluator.add_label(_label(i, i, i % 2 == 0, delay=1))
    assert evaluator.join.counts.joined == 20_000
    assert len(evaluator.joined()) <= 3_000  # about 2 windows at most, never all 20,000
    assert evaluator.current().metrics.n == 1_000
    assert evaluator.dropped_rows == 0
    capped = OnlineEvaluator(window_ms=10**9, max_rows=5_000)
    for i in range(12_000):
        capped.add_prediction(_prediction(i, i, 0.5))
        capped.add_label(_label(i, i, False, delay=1))
    assert len(capped.joined()) <= 5_000
    assert capped.dropped_rows + len(capped.joined()) == 12_000
    assert capped.joined()["tx_time"].min() > 6_000  # the oldest went first
