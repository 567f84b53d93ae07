"""The pipeline on Kinesis (a moto server) gives the Kafka run's predictions on one history.

Kinesis side: `rtml.aws.pipeline` over Kinesis streams, no Kafka topic involved. Kafka side:
the same history replayed into `transactions`, the Quix feature app (`rtml features run`),
then the prediction service's scoring code over `features` (`rtml replay sandbox`). Both
score with the same saved model; every transaction must get the same score and decision.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from rtml.aws import server
from rtml.aws.pipeline import Pipeline, stream_names
from rtml.aws.streams import KafkaStream, KinesisStream
from rtml.clients import admin
from rtml.features.batch import batch_features
from rtml.features.runner import PIPELINE_TOPICS, FeatureRun, fresh_topics
from rtml.model import registry
from rtml.model.build import build
from rtml.model.dataset import training_set
from rtml.model.train import KINDS
from rtml.model.update import Scorer
from rtml.ops import sandbox
from rtml.schemas import register_all
from rtml.schemas.wire import WireDeserializer
from rtml.simulate import SimulationParams, simulate
from rtml.simulate.producer import publish_reference, replay

pytestmark = pytest.mark.slow
HISTORY = SimulationParams(n_customers=20, n_terminals=40, n_days=14, seed=11)


@pytest.fixture(scope="module")
def moto(cluster_settings) -> Iterator[str]:
    with server.running(cluster_settings) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def version(cluster_settings) -> str:
    """A logistic regression saved by rtml.model, trained on another small history."""
    train = training_set(simulate(SimulationParams(60, 120, 21, seed=4)))
    trained = build(train, {"kind": "simulation"}, kinds=(KINDS[0],))
    return registry.save(cluster_settings, trained, plot=False)


def _same(one: pd.DataFrame, other: pd.DataFrame) -> None:
    a = one.set_index("transaction_id").sort_index()
    b = other.set_index("transaction_id").sort_index()
    assert not a.index.duplicated().any() and a.index.equals(b.index)
    assert (a["decision"] == b["decision"]).all()
    assert (a["model_version"] == b["model_version"]).all()
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=1e-9)


def test_kinesis_predictions_equal_the_kafka_runs(cluster_settings, moto, version) -> None:
    settings = cluster_settings
    register_all(settings)
    sim = simulate(HISTORY)
    n = len(sim.transactions)
    scorer = Scorer.load(registry.load(settings, version))

    # Kinesis: 2 shards per stream, customer ids as partition keys.
    kinesis = server.client(moto, "kinesis")
    prefix = f"t{uuid.uuid4().hex[:6]}"
    streams = {r: KinesisStream(kinesis, name) for r, name in stream_names(prefix).items()}
    pipeline = Pipeline(settings, streams)
    report = pipeline.run(sim, scorer, units=2)
    assert set(report.counts.values()) == {n} and report.late == 0
    on_kinesis = pipeline.predictions()

    # Each customer's transactions sit in one shard, each terminal's in one shard of the
    # re-keyed stream, and both streams use more than one shard.
    for role, field in (("transactions", "customer_id"), ("by-terminal", "terminal_id")):
        shards = streams[role].read()
        assert len([s for s in shards.values() if s]) == 2
        owner = {r.key: shard for shard, records in shards.items() for r in records}
        assert len(owner) == sim.transactions[field].nunique()
    # The features read back from Kinesis equal the batch reference.
    decode = WireDeserializer.for_topic(settings, "features")
    rows = [decode(r.value) for recs in streams["features"].read().values() for r in recs]
    stream = pd.DataFrame(rows).set_index("transaction_id").sort_index()
    batch = batch_features(sim.transactions, sim.labels, sim.customers, sim.terminals)
    for column in batch.columns:
        left, right = stream[column].to_numpy(dtype=float), batch[column].to_numpy(dtype=float)
        np.testing.assert_allclose(left, right, rtol=1e-9, atol=1e-9, err_msg=column)

    # Kafka: the lab's own path on the same history.
    fresh_topics(settings, PIPELINE_TOPICS)
    publish_reference(settings, sim)
    assert replay(settings, sim, progress=False).ok
    with FeatureRun(settings, windows=False) as app:
        app.wait_for("features", n, timeout=300)
    name = f"kinesis-{uuid.uuid4().hex[:6]}"
    assert sandbox.run(settings, version, name).predictions == n
    on_kafka = sandbox.read(settings, name)

    assert len(on_kinesis) == len(on_kafka) == n
    _same(on_kinesis, on_kafka)
    # The check can fail: one changed decision is caught.
    changed = on_kinesis.copy()
    changed.loc[0, "decision"] = "APPROVE" if changed.loc[0, "decision"] != "APPROVE" else "REVIEW"
    with pytest.raises(AssertionError):
        _same(changed, on_kafka)

    # The same pipeline over Kafka topics (the abstraction's other implementation).
    topics = {r: KafkaStream(settings, name) for r, name in stream_names(prefix).items()}
    try:
        again = Pipeline(settings, topics)
        again.run(sim, scorer, units=2)
        _same(again.predictions(), on_kafka)
    finally:
        admin(settings, timeout=10).delete_topics([t.name for t in topics.values()])
