"""Replaying history through saved models into sandbox topics, on the live cluster: the same
model twice gives the same predictions; two models are compared on the same transactions."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from rtml import topics
from rtml.clients import durable_producer
from rtml.features.runner import fresh_topics
from rtml.model import registry
from rtml.model.build import build
from rtml.model.dataset import training_set
from rtml.model.train import KINDS
from rtml.ops import sandbox
from rtml.schemas import register_all
from rtml.schemas.wire import PreparedSerializer
from rtml.serve.inputs import history, records, send_features
from rtml.simulate import SimulationParams, simulate

pytestmark = pytest.mark.slow


def _send_labels(settings, frame: pd.DataFrame) -> None:
    encode = PreparedSerializer.for_topic(settings, "labels")
    producer = durable_producer(settings, linger_ms=5)
    for tx_id, row in frame.iterrows():
        label = {
            "transaction_id": int(tx_id),
            "customer_id": int(row["customer_id"]),
            "terminal_id": int(row["terminal_id"]),
            "tx_fraud": bool(row["tx_fraud"]),
            "tx_datetime": int(row["event_time_ms"]),
            "label_time": int(row["event_time_ms"]),
        }
        producer.produce("labels", key=str(tx_id).encode(), value=encode(label))
        producer.poll(0)
    assert producer.flush(60) == 0


@pytest.fixture(scope="module")
def sandboxed(cluster_settings):
    """Features and labels of a small history on fresh topics, and two saved model versions
    (a logistic regression and a random forest) trained on another history."""
    settings = cluster_settings
    topics.apply(settings)
    register_all(settings)
    fresh_topics(settings, ["features", "labels"])
    frame = history(n_customers=80, n_terminals=200, n_days=20, seed=5)
    assert send_features(settings, records(frame)) == len(frame)
    _send_labels(settings, frame)
    train = training_set(simulate(SimulationParams(120, 300, 30, seed=4)))
    versions = tuple(
        registry.save(settings, build(train, {"kind": "simulation"}, kinds=(kind,)), plot=False)
        for kind in KINDS
    )
    return settings, frame, versions


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_the_same_model_replayed_twice_makes_the_same_predictions(sandboxed):
    settings, frame, (first, _) = sandboxed
    one, two = _name(), _name()
    done = sandbox.run(settings, first, one)
    assert (done.records, done.predictions, done.undecodable) == (len(frame), len(frame), 0)
    assert done.topic == f"predictions.sandbox-{one}" and done.version == first
    sandbox.run(settings, first, two)
    a, b = sandbox.read(settings, one), sandbox.read(settings, two)
    assert sorted(a["transaction_id"]) == sorted(frame.index)
    assert set(a["model_version"]) == {first}
    assert sandbox.identical(a, b)
    # One changed score is enough to tell them apart.
    changed = b.copy()
    changed.loc[0, "score"] += 1e-9
    assert not sandbox.identical(a, changed)

    # A sandbox is never appended to by accident; replaced, it holds one run, not two.
    with pytest.raises(sandbox.SandboxError, match="exists already"):
        sandbox.run(settings, first, one)
    sandbox.run(settings, first, one, replace_existing=True)
    again = sandbox.read(settings, one)
    assert len(again) == len(frame) and sandbox.identical(a, again)


def test_two_models_are_compared_on_the_same_transactions_with_the_labels(sandboxed):
    settings, frame, (first, second) = sandboxed
    one, two = _name(), _name()
    sandbox.run(settings, first, one)
    sandbox.run(settings, second, two)
    result = sandbox.compare(settings, one, two)
    assert not result.identical
    table = result.table
    assert list(table.loc["model versions"]) == [first, second]
    assert list(table.loc["predictions"]) == [len(frame)] * 2
    assert list(table.loc["labelled"]) == [len(frame)] * 2
    assert list(table.loc["frauds labelled"]) == [int(frame["tx_fraud"].sum())] * 2
    assert table.loc["transactions in both", one] == len(frame)
    assert int(result.moves.to_numpy().sum()) == len(frame)

    # Recall and precision of each run, computed here from what the sandbox holds.
    for name in (one, two):
        got = sandbox.read(settings, name).set_index("transaction_id").join(frame["tx_fraud"])
        flagged = got["decision"] != "APPROVE"
        caught = (flagged & got["tx_fraud"]).sum()
        assert table.loc["recall (REVIEW or DECLINE)", name] == round(
            caught / got["tx_fraud"].sum(), 4
        )
        if flagged.any():
            assert table.loc["precision (REVIEW or DECLINE)", name] == round(
                caught / flagged.sum(), 4
            )
    a, b = sandbox.read(settings, one), sandbox.read(settings, two)
    decided = [r.set_index("transaction_id")["decision"].sort_index() for r in (a, b)]
    same = decided[0] == decided[1]
    assert table.loc["same decision (share)", one] == round(float(same.mean()), 4)
