"""The model-update contract without a broker: what a version must pass before it scores."""

import dataclasses
import io
import json

import numpy as np
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier

from rtml.model.update import (
    ModelError,
    ModelUpdate,
    Scorer,
    decode_features,
    feature_fields,
)
from rtml.schemas import SCHEMAS, load_schema

COLUMNS = ("tx_amount", "customer_nb_tx_1d", "terminal_risk_7d")


@pytest.fixture(scope="module")
def forest():
    rng = np.random.default_rng(7)
    rows = rng.random((400, len(COLUMNS)), dtype=np.float32)
    labels = (rows[:, 0] > 0.8).astype(int)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(rows, labels)
    graph = to_onnx(model, rows[:1], options={id(model): {"zipmap": False}})
    return model, rows, graph.SerializeToString()


def _update(onnx: bytes, **changes) -> ModelUpdate:
    return dataclasses.replace(ModelUpdate("fraud", "v1", COLUMNS, 0.3, 0.7, onnx), **changes)


def test_a_good_version_scores_as_scikit_learn_does(forest):
    model, rows, onnx = forest
    scorer = Scorer.load(_update(onnx))
    assert scorer.version == "v1" and scorer.features == COLUMNS
    np.testing.assert_allclose(scorer.score(rows), model.predict_proba(rows)[:, 1], atol=1e-5)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"sha256": "0" * 64}, "corrupt"),
        ({"features": ("tx_amount", "shoe_size", "terminal_risk_7d")}, "shoe_size"),
        ({"features": ("transaction_id", "tx_amount", "terminal_risk_7d")}, "transaction_id"),
        ({"features": ()}, "names no input columns"),
        ({"review_threshold": 0.8, "decline_threshold": 0.5}, "review <= decline"),
    ],
)
def test_a_version_that_does_not_fit_is_refused_with_the_reason(forest, changes, says):
    with pytest.raises(ModelError, match=says):
        Scorer.load(_update(forest[2], **changes))


def test_a_graph_that_is_not_onnx_or_has_the_wrong_width_is_refused(forest):
    garbage = b"\x08\x07" + b"not a protobuf" * 10
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        Scorer.load(_update(garbage))
    with pytest.raises(ModelError, match=r"not one \[n, 2\] array of its 2 features"):
        Scorer.load(_update(forest[2], features=("tx_amount", "terminal_risk_7d")))


def test_decisions_follow_the_thresholds(forest):
    update = _update(forest[2])
    decided = update.decide(np.array([0.0, 0.29, 0.3, 0.69, 0.7, 1.0]))
    assert list(decided) == ["APPROVE", "APPROVE", "REVIEW", "REVIEW", "DECLINE", "DECLINE"]


def test_the_record_survives_avro_both_ways(forest):
    update = _update(forest[2], metrics={"roc_auc": 0.91})
    schema = parse_schema(json.loads(load_schema(SCHEMAS["model-updates"])))
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, update.to_record())
    back = ModelUpdate.from_record(schemaless_reader(io.BytesIO(buffer.getvalue()), schema))
    assert back == dataclasses.replace(update, created=back.created)
    assert abs((back.created - update.created).total_seconds()) < 0.001


def test_features_become_one_float32_array_with_nan_for_missing():
    rows = decode_features([{"a": 1, "b": None}, {"a": 2, "b": 3.5}, {"a": True}], ["a", "b"])
    assert rows.dtype == np.float32 and rows.shape == (3, 2)
    np.testing.assert_array_equal(rows, [[1, np.nan], [2, 3.5], [1, np.nan]])
    assert decode_features([{"a": 4}], ["a"]).tolist() == [[4.0]]


def test_model_inputs_are_the_numeric_measurements_of_the_features_schema():
    fields = feature_fields()
    assert {"tx_amount", "is_night", "terminal_risk_30d", "terminal_distance"} <= set(fields)
    assert not {"transaction_id", "customer_id", "tx_datetime", "feature_time"} & set(fields)
