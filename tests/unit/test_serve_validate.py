"""The prediction service's input checks and decisions, without a broker."""

import math

import numpy as np
import pytest

from rtml.model.update import ModelUpdate, feature_fields
from rtml.serve.errors import ServeError
from rtml.serve.service import PredictionService, ServeOptions
from rtml.serve.validate import CHECKED, SAFE_DECISION, outcomes, problems

MODEL = ("tx_amount", "terminal_risk_7d", "customer_nb_tx_1d")


def record(**changes):
    """A features record as the feature app writes it, with `changes`."""
    out = {
        "transaction_id": 7,
        "tx_datetime": 1_700_000_000_000,
        "customer_id": 3,
        "terminal_id": 11,
        "tx_amount": 52.5,
        "is_weekend": False,
        "is_night": True,
        "terminal_distance": 2.5,
        "feature_time": 1_700_000_000_050,
    }
    for d in (1, 7, 30):
        out |= {
            f"customer_nb_tx_{d}d": d,
            f"customer_avg_amount_{d}d": 40.0,
            f"terminal_nb_tx_{d}d": 2 * d,
            f"terminal_risk_{d}d": 0.25,
        }
    out.update(changes)
    return out


def update(review=0.3, decline=0.8):
    return ModelUpdate("fraud", "v1", MODEL, review, decline, b"not used here")


def test_every_numeric_feature_a_model_may_use_is_checked():
    booleans = {n for n, kind in feature_fields().items() if kind == "boolean"}
    assert set(feature_fields()) - booleans == set(CHECKED)


def test_a_record_the_feature_app_would_write_may_be_scored():
    assert problems([record(), record(terminal_risk_1d=1.0, tx_amount=0.0)], MODEL) == [None, None]
    assert problems([], MODEL) == []


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("tx_amount", -5.0, "tx_amount is -5.0, not a finite number >= 0"),
        ("tx_amount", math.nan, "tx_amount is nan, not a finite number >= 0"),
        ("tx_amount", math.inf, "tx_amount is inf, not a finite number >= 0"),
        ("customer_avg_amount_30d", -0.5, "customer_avg_amount_30d is -0.5"),
        ("customer_nb_tx_7d", -1, "customer_nb_tx_7d is -1, not a count >= 0"),
        ("terminal_risk_1d", 1.5, "terminal_risk_1d is 1.5, not a share in [0, 1]"),
        ("terminal_risk_30d", math.nan, "terminal_risk_30d is nan, not a share in [0, 1]"),
        ("terminal_distance", -3.0, "terminal_distance is -3.0, not a finite number >= 0"),
    ],
)
def test_out_of_range_values_are_named_even_in_columns_the_model_does_not_use(field, value, says):
    good, bad = problems([record(), record(**{field: value})], MODEL)
    assert good is None
    assert bad is not None and bad.startswith(says)


def test_several_problems_are_all_named():
    (reason,) = problems([record(tx_amount=-1.0, terminal_risk_7d=2.0)], MODEL)
    assert "tx_amount is -1.0" in reason and "terminal_risk_7d is 2.0" in reason


def test_an_unknown_distance_matters_only_to_a_model_that_uses_it():
    unknown = record(terminal_distance=None)
    assert problems([unknown], MODEL) == [None]
    (reason,) = problems([unknown], (*MODEL, "terminal_distance"))
    assert reason == "terminal_distance is missing (the model needs it)"
    missing = record()
    del missing["terminal_distance"]
    assert problems([missing], MODEL) == [None]


def test_decisions_follow_the_thresholds_and_invalid_rows_get_review_unscored():
    scores = np.array([0.1, 0.3, 0.79, 0.8, 0.95, 0.05])
    reasons = [None, None, None, None, None, "tx_amount is -1.0, not a finite number >= 0"]
    out_scores, decisions = outcomes(update(), scores, reasons)
    assert list(decisions) == ["APPROVE", "REVIEW", "REVIEW", "DECLINE", "DECLINE", SAFE_DECISION]
    assert out_scores[:5].tolist() == scores[:5].tolist()
    assert math.isnan(out_scores[5])
    assert scores[5] == 0.05  # the caller's array is left as it was


def test_a_score_that_is_not_a_number_is_reviewed_not_approved():
    _, decisions = outcomes(update(), np.array([np.nan, np.inf, 0.0]), [None, None, None])
    assert list(decisions) == ["REVIEW", "REVIEW", "APPROVE"]


@pytest.mark.parametrize(("batch", "wait"), [(0, 5.0), (100_001, 5.0), (10, -1.0)])
def test_impossible_batch_settings_are_one_sentence_before_any_connection(tmp_path, batch, wait):
    from rtml.config import Settings

    settings = Settings.from_env({"RTML_HOME": str(tmp_path), "RTML_KAFKA_PORT": "1100"})
    with pytest.raises(ServeError, match=r"^A batch of .* is not possible: use 1 to 100,000"):
        PredictionService(settings, ServeOptions(max_batch=batch, max_wait_ms=wait))
