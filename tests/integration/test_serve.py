"""The prediction service on the live cluster: one prediction per record, hot swap,
refused models, bad input, two instances, exactly-once.

The service runs as `rtml serve run` in a subprocess, as in the lab. Features records and
models are written straight to their topics (no feature app), into topics emptied first,
so every topic holds exactly what one test wrote.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict

import numpy as np
import pytest

from rtml import topics
from rtml.dlq import read_origin
from rtml.features.labels import to_millis
from rtml.features.outputs import read_records
from rtml.features.runner import count_records, fresh_topics
from rtml.model.update import ModelUpdate
from rtml.schemas import register_all
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.serve.inputs import (
    FIRST_COLUMNS,
    SECOND_COLUMNS,
    history,
    publish_model,
    records,
    send_features,
    tiny_model,
)
from rtml.serve.runner import ServeRun
from rtml.serve.service import REVIEW_HEADER

pytestmark = pytest.mark.slow
TOPICS = ("features", "predictions", "model-updates", "serve.dlq")


@pytest.fixture(scope="module")
def prepared(cluster_settings):
    """Topics and schemas of the catalogue, and a small history with its features."""
    topics.apply(cluster_settings)
    register_all(cluster_settings)
    frame = history()
    return cluster_settings, frame, records(frame)


@pytest.fixture()
def settings(prepared):
    """The test cluster with the service's topics empty."""
    fresh_topics(prepared[0], TOPICS)
    return prepared[0]


def _predictions(settings) -> list[tuple[dict, object]]:
    decode = WireDeserializer.for_topic(settings, "predictions")
    return [(decode(m.value()), m) for m in read_records(settings, "predictions")]


def _sources(settings) -> dict[int, tuple[int, int, int]]:
    """transaction id -> (partition, offset, Kafka timestamp) of its features record."""
    decode = WireDeserializer.for_topic(settings, "features")
    out = {}
    for m in read_records(settings, "features"):
        out[decode(m.value())["transaction_id"]] = (m.partition(), m.offset(), m.timestamp()[1])
    return out


def _once(predictions, ids) -> None:
    counts = Counter(p["transaction_id"] for p, _ in predictions)
    assert set(counts) == set(ids), "a transaction has no prediction, or an unknown one has"
    assert max(counts.values()) == 1, "a transaction was scored twice"


def test_waits_for_a_model_then_scores_each_record_once_and_swaps_at_one_point(prepared, settings):
    _, frame, rows = prepared
    v1, v2 = tiny_model(frame, "v1"), tiny_model(frame, "v2", SECOND_COLUMNS, 0.2, 0.6)
    early, streamed = rows[:500], rows[500:5500]
    send_features(settings, early)
    # The only version at start is corrupt: refused, so the service waits for a good one.
    publish_model(settings, ModelUpdate("fraud", "v0", FIRST_COLUMNS, 0.3, 0.7, b"junk"))
    with ServeRun(settings) as run:
        run.wait_status(lambda s: s.state == "waiting for a model", 60, "it to wait for a model")
        assert [r["version"] for r in run.status().refused] == ["v0"]
        assert run.output().count("Waiting for a model on model-updates") == 1
        assert count_records(settings, "predictions") == 0  # the features wait as lag
        publish_model(settings, v1)
        run.wait_status(lambda s: s.predictions == 500, 60, "the waiting records")
        # v2 arrives mid-stream, then three versions the service must refuse. The rest of
        # the stream follows once v2 serves, so both versions score some of it however
        # long loading takes on a busy machine.
        sender = threading.Thread(target=send_features, args=(settings, streamed[:2500], 1000.0))
        sender.start()
        run.wait_status(lambda s: s.predictions >= 1500, 60, "1,000 streamed records")
        publish_model(settings, v2)
        run.wait_status(lambda s: s.model_version == "v2", 60, "version v2 to serve")
        sender.join()
        sender = threading.Thread(target=send_features, args=(settings, streamed[2500:], 1000.0))
        sender.start()
        bad = {
            "v3": ModelUpdate("fraud", "v3", FIRST_COLUMNS, 0.3, 0.7, v1.onnx, sha256="0" * 64),
            "v4": ModelUpdate("fraud", "v4", FIRST_COLUMNS, 0.3, 0.7, b"not an onnx graph"),
            "v5": ModelUpdate("fraud", "v5", ("tx_amount", "colour"), 0.3, 0.7, v1.onnx),
        }
        for update in bad.values():
            publish_model(settings, update)
        sender.join()
        status = run.wait_status(
            lambda s: s.predictions == 5500 and len(s.refused) == 4, 120, "every record"
        )
    assert status.model_version == "v2" and status.swaps == 1
    assert (status.records, status.dlq, status.reviewed) == (5500, 0, 0)
    reasons = {r["version"]: r["reason"] for r in status.refused}
    assert "v3" in reasons and "is corrupt" in reasons["v3"]
    assert "v4" in reasons and "is not a valid ONNX model" in reasons["v4"]
    assert "v5" in reasons and "it expects colour" in reasons["v5"]
    assert "refused model version v5" in status.last_error

    predictions = _predictions(settings)
    _once(predictions, [r["transaction_id"] for r in rows[:5500]])
    sources = _sources(settings)
    by_partition = defaultdict(list)
    for p, msg in predictions:
        partition, offset, appended = sources[p["transaction_id"]]
        by_partition[partition].append((offset, p["model_version"]))
        assert msg.key() == str(p["transaction_id"]).encode()
        assert to_millis(p["appended_time"]) == appended
        assert to_millis(p["feature_time"]) <= to_millis(p["predicted_time"])
        version = v1 if p["model_version"] == "v1" else v2
        assert p["decision"] == version.decide(np.array([p["score"]]))[0]
    versions = Counter(p["model_version"] for p, _ in predictions)
    assert set(versions) == {"v1", "v2"} and versions["v1"] > 500
    for partition, seen in by_partition.items():
        order = [v for _, v in sorted(seen)]
        switch = order.index("v2") if "v2" in order else len(order)
        assert order == ["v1"] * switch + ["v2"] * (len(order) - switch), partition
    early_ids = {r["transaction_id"] for r in early}
    assert {p["model_version"] for p, _ in predictions if p["transaction_id"] in early_ids} == {
        "v1"
    }

    dead = read_records(settings, "serve.dlq")
    assert len(dead) == 4  # v0, v3, v4, v5
    for msg in dead:
        origin = read_origin(msg.headers())
        assert msg.key() == b"fraud"
        assert (origin["topic"], origin["stage"], origin["error_type"]) == (
            "model-updates",
            "serve",
            "ModelError",
        )
        assert origin["group"] == run.group


def test_bad_input_gets_review_or_the_dlq_and_in_equals_predictions_plus_dlq(prepared, settings):
    _, frame, rows = prepared
    publish_model(settings, tiny_model(frame, "v1"))
    good = rows[:300]
    invalid = [
        {**rows[300], "tx_amount": -5.0},
        {**rows[301], "terminal_risk_7d": math.nan},
        {**rows[302], "customer_avg_amount_1d": math.inf},
        {**rows[303], "terminal_risk_1d": 1.5},
        {**rows[304], "customer_nb_tx_30d": -2},
    ]
    valid_bytes = PreparedSerializer.for_topic(settings, "features")(rows[305])
    poison = [
        (b"1", b"not avro at all"),
        (b"2", None),
        (b"3", valid_bytes[:12]),  # truncated
        (b"4", b"\x00\x00\x00\x7f\xffunknown schema id"),
    ]
    total = send_features(settings, good + invalid, extra=poison)
    assert total == 309
    with ServeRun(settings) as run:
        status = run.wait_status(lambda s: s.records == total, 90, "every record")
        assert run.running  # poison did not stop it
    assert (status.predictions, status.reviewed, status.dlq) == (305, 5, 4)
    assert count_records(settings, "predictions") + count_records(settings, "serve.dlq") == total

    predictions = _predictions(settings)
    _once(predictions, [r["transaction_id"] for r in good + invalid])
    bad_ids = {r["transaction_id"]: r for r in invalid}
    for p, msg in predictions:
        reason = dict(msg.headers() or []).get(REVIEW_HEADER)
        if p["transaction_id"] in bad_ids:
            assert p["decision"] == "REVIEW" and math.isnan(p["score"])
            assert reason and b" is " in reason
        else:
            assert reason is None and 0 <= p["score"] <= 1
    dead = sorted(read_records(settings, "serve.dlq"), key=lambda m: m.key())
    assert [(m.key(), m.value()) for m in dead] == poison
    for msg in dead:
        origin = read_origin(msg.headers())
        assert (origin["topic"], origin["stage"], origin["error_type"]) == (
            "features",
            "serve",
            "SchemaError",
        )
        assert int(origin["offset"]) >= 0 and origin["group"] == run.group


def test_a_second_instance_takes_partitions_mid_stream_and_nothing_is_scored_twice(
    prepared, settings
):
    _, frame, rows = prepared
    publish_model(settings, tiny_model(frame, "v1"))
    stop, sent = threading.Event(), []

    def stream():
        """Records until `stop`: the history again and again, each with a new id."""
        for i in range(10**7):
            if stop.is_set():
                return
            sent.append(i)
            yield {**rows[i % len(rows)], "transaction_id": i}

    first = ServeRun(settings)
    second = ServeRun(settings, group=first.group, instance=1)

    def total(_) -> int:
        return sum(r.status().records if r.status() else 0 for r in (first, second))

    with first:
        first.wait_status(lambda s: s.partitions == list(range(6)), 60, "all six partitions")
        sender = threading.Thread(target=send_features, args=(settings, stream(), 1000.0))
        sender.start()
        try:
            first.wait_status(lambda s: s.records >= 1000, 60, "1,000 records")
            with second:
                # The group rebalances while records flow: the first instance commits what
                # it produced before it hands partitions over.
                second.wait_status(lambda s: s.records > 0, 90, "the second instance to score")
                stop.set()
                sender.join()
                first.wait_status(lambda s: total(s) >= len(sent), 90, "every record")
                a, b = first.status(), second.status()
        finally:
            stop.set()
            sender.join()
    assert a.partitions and b.partitions
    assert sorted(a.partitions + b.partitions) == list(range(6))
    assert a.records + b.records == len(sent)
    _once(_predictions(settings), sent)


def test_exactly_once_commits_predictions_and_offsets_together(prepared, settings):
    _, frame, rows = prepared
    publish_model(settings, tiny_model(frame, "v1"))
    send_features(settings, rows[:1000], extra=[(b"9", b"poison")])
    with ServeRun(settings, guarantee="exactly-once") as run:
        status = run.wait_status(lambda s: s.records == 1001, 90, "every record")
    assert status.guarantee == "exactly-once"
    assert (status.predictions, status.dlq) == (1000, 1)
    _once(_predictions(settings), [r["transaction_id"] for r in rows[:1000]])
    assert [m.value() for m in read_records(settings, "serve.dlq")] == [b"poison"]
    # Both topics end in commit markers, which readers never see: more offsets than records.
    assert count_records(settings, "predictions") > 1000
