"""Latency histograms and online evaluation read from the live test cluster.

Predictions and labels with known timestamps go to fresh topics (6 partitions each, the
catalogue's shape); what the readers compute must equal what numpy and scikit-learn
compute from the same records directly.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
from confluent_kafka.admin import NewTopic
from sklearn.metrics import average_precision_score, precision_score, recall_score

from rtml import topics
from rtml.cli import main
from rtml.clients import create_missing_topics, durable_producer
from rtml.model.online import (
    OnlineEvaluator,
    drift_table,
    evaluate,
    follow_evaluation,
    read_features_between,
)
from rtml.model.update import feature_fields
from rtml.observe.latency import (
    PERCENTILES,
    LatencyError,
    LatencySnapshot,
    read_latency,
    snapshot_path,
)
from rtml.observe.throughput import end_offsets
from rtml.schemas import register_all
from rtml.schemas.wire import PreparedSerializer

PARTITIONS = 6
N = 300
UNLABELLED = range(20)  # predictions whose label never comes
ORPHANS = range(10_000, 10_010)  # labels whose prediction never comes
EARLY = range(20, 60)  # labels written (and read) before their predictions
HORIZON_MS = 60_000
WINDOW_MS = 100_000
REL = 1e-3  # HdrHistogram's precision at 3 significant digits


@pytest.fixture(scope="module")
def settings(cluster_settings):
    topics.apply(cluster_settings)
    register_all(cluster_settings)
    return cluster_settings


def _fresh(settings, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    # Kept forever, like the catalogue's history topics: some records carry 2020 timestamps.
    topic = NewTopic(name, PARTITIONS, 3, config={"retention.ms": "-1"})
    create_missing_topics(settings, [topic])
    deadline = time.monotonic() + 30
    while end_offsets(settings, [name]) != {name: 0}:
        assert time.monotonic() < deadline, f"{name} has no leaders yet"
        time.sleep(0.2)
    return name


@pytest.fixture(scope="module")
def data():
    """N predictions with known stage timestamps, and the labels of most of them."""
    rng = np.random.default_rng(11)
    now = time.time_ns() // 1_000_000
    appended = now - 200_000 + np.arange(N) * 500  # one transaction every 0.5 s
    freshness = rng.integers(1, 40, N)
    scoring = rng.integers(1, 80, N)
    feature = appended + freshness
    record_ts = feature + scoring  # the prediction record's own timestamp
    tx_time = 1_600_000_000_000 + np.arange(N) * 1_000  # event time, one a second
    score = np.round(rng.random(N), 3)
    fraud = rng.random(N) < 0.3 + 0.4 * score  # higher scores, more fraud
    decision = np.where(score >= 0.8, "DECLINE", np.where(score >= 0.6, "REVIEW", "APPROVE"))
    return {
        "appended": appended,
        "feature": feature,
        "record_ts": record_ts,
        "tx_time": tx_time,
        "score": score,
        "fraud": fraud,
        "decision": decision,
    }


def _prediction(d, i: int) -> dict:
    return {
        "transaction_id": i,
        "customer_id": i % 17,
        "terminal_id": i % 23,
        "score": float(d["score"][i]),
        "decision": str(d["decision"][i]),
        "model_version": "v1",
        "tx_datetime": int(d["tx_time"][i]),
        "appended_time": int(d["appended"][i]),
        "feature_time": int(d["feature"][i]),
        "predicted_time": int(d["record_ts"][i]) - 1,
    }


def _label(tid: int, tx_time: int, fraud: bool) -> dict:
    return {
        "transaction_id": tid,
        "customer_id": tid % 17,
        "terminal_id": tid % 23,
        "tx_fraud": fraud,
        "tx_datetime": tx_time,
        "label_time": tx_time + 5_000,
    }


def _write_predictions(settings, topic: str, d, ids) -> None:
    serialize = PreparedSerializer.for_topic(settings, "predictions")
    producer = durable_producer(settings)
    for i in ids:
        producer.produce(
            topic,
            serialize(_prediction(d, i)),
            str(i).encode(),
            partition=i % PARTITIONS,
            timestamp=int(d["record_ts"][i]),
        )
    assert producer.flush(30) == 0


def _write_labels(settings, topic: str, labels: list[dict]) -> None:
    serialize = PreparedSerializer.for_topic(settings, "labels")
    producer = durable_producer(settings)
    for label in labels:
        tid = label["transaction_id"]
        producer.produce(
            topic,
            serialize(label),
            str(tid).encode(),
            partition=tid % PARTITIONS,
            timestamp=label["label_time"],
        )
    assert producer.flush(30) == 0


@pytest.fixture(scope="module")
def predictions_topic(settings, data):
    topic = _fresh(settings, "predictions-test")
    _write_predictions(settings, topic, data, range(N))
    return topic


def test_histograms_equal_numpy_on_the_same_records(settings, data, predictions_topic):
    histograms = read_latency(settings, topic=predictions_topic, timeout=60)
    assert histograms.records == N and histograms.undecodable == 0
    expected = {
        "freshness": data["feature"] - data["appended"],
        "event_to_prediction": data["record_ts"] - data["appended"],
        "scoring": data["record_ts"] - data["feature"],
    }
    snapshot = histograms.snapshot()
    for name, values in expected.items():
        h = snapshot.histograms[name]
        assert h.count == N
        for p in PERCENTILES:
            exact = np.percentile(values, p, method="inverted_cdf")
            assert h.percentile_ms(p) == pytest.approx(exact, rel=REL), (name, p)
        assert h.max_ms() == pytest.approx(values.max(), rel=REL)
    # The last 10 s of prediction time hold the records stamped in those seconds.
    last_second = int(data["record_ts"].max()) // 1000
    inside = data["record_ts"] // 1000 > last_second - 10
    window = histograms.window(10).histograms["event_to_prediction"]
    assert window.count == inside.sum()
    assert window.max_ms() == pytest.approx(expected["event_to_prediction"][inside].max(), rel=REL)


def test_reading_from_a_timestamp_takes_only_the_later_records(settings, data, predictions_topic):
    since = int(data["record_ts"][N // 2])
    histograms = read_latency(settings, since_ms=since, topic=predictions_topic, timeout=60)
    assert histograms.records == int((data["record_ts"] >= since).sum())


def test_the_cli_prints_the_table_of_what_is_there(settings, predictions_topic, capsys):
    assert main(["observe", "latency", "--once", "--topic", predictions_topic]) == 0
    out = capsys.readouterr().out
    assert f"{N:,} predictions" in out
    assert "event_to_prediction" in out


def test_the_live_cli_writes_the_window_for_the_control_room(settings, data, tmp_path):
    topic = _fresh(settings, "predictions-live")
    now = time.time_ns() // 1_000_000
    # The same latencies as `data`, stamped now, so they fall in the last 300 s.
    shift = now - int(data["record_ts"].max())
    live = {
        k: v + shift if k in ("appended", "feature", "record_ts") else v for k, v in data.items()
    }
    _write_predictions(settings, topic, live, range(N))
    path = snapshot_path(settings)
    path.unlink(missing_ok=True)
    command = [sys.executable, "-m", "rtml", "observe", "latency", "--from-start", "--write"]
    command += ["--topic", topic, "--seconds", "300", "--interval", "0.5"]
    log = tmp_path / "latency.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                snapshot = LatencySnapshot.read(path)
                if snapshot.histograms["event_to_prediction"].count == N:
                    break
            except LatencyError:
                pass  # not written yet
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no snapshot with every prediction in 60 s"
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(30)
    exact = live["record_ts"] - live["appended"]
    h = snapshot.histograms["event_to_prediction"]
    assert h.percentile_ms(99) == pytest.approx(
        np.percentile(exact, 99, method="inverted_cdf"), rel=REL
    )


def test_online_evaluation_joins_both_orders_and_counts_what_it_cannot(settings, data, capsys):
    predictions = _fresh(settings, "predictions-eval")
    labels = _fresh(settings, "labels-eval")
    labelled = [i for i in range(N) if i not in UNLABELLED]
    label_of = {i: _label(i, int(data["tx_time"][i]), bool(data["fraud"][i])) for i in labelled}
    evaluator = OnlineEvaluator(window_ms=WINDOW_MS, keep_ms=WINDOW_MS, horizon_ms=HORIZON_MS)
    follower = follow_evaluation(
        settings, evaluator, since_ms={}, predictions=predictions, labels=labels
    )
    next(follower)  # assigned at the (empty) beginning of both topics
    # Some labels come first: they must wait for their predictions.
    _write_labels(settings, labels, [label_of[i] for i in EARLY])
    _follow_until(follower, lambda: evaluator.join.counts.labels == len(EARLY))
    assert evaluator.join.counts.pending_labels == len(EARLY)
    _write_predictions(settings, predictions, data, range(N))
    _write_predictions(settings, predictions, data, [N - 1])  # a duplicate, as after a restart
    _follow_until(follower, lambda: evaluator.join.counts.predictions == N + 1)
    assert evaluator.join.counts.joined == len(EARLY)
    # The other labels come after their predictions; the orphans' transactions are early.
    late = [label_of[i] for i in labelled if i not in EARLY]
    orphans = [_label(t, int(data["tx_time"][0]) + 1, True) for t in ORPHANS]
    _write_labels(settings, labels, orphans + late)
    total_labels = len(EARLY) + len(late) + len(orphans)
    _follow_until(follower, lambda: evaluator.join.counts.labels == total_labels)
    follower.close()

    counts = evaluator.join.counts
    assert counts.joined == len(labelled)
    assert counts.duplicate_predictions == 1
    # Each partition's clocks passed tx + horizon for the first 20 transactions and for the
    # orphans (all at the start of the event time): counted, none left waiting.
    assert counts.expired_predictions == len(UNLABELLED)
    assert counts.orphan_labels == len(ORPHANS)
    assert (counts.pending_predictions, counts.pending_labels) == (0, 0)

    result = evaluator.current()
    ids = np.array(labelled)
    tx = data["tx_time"][ids]
    inside = ids[tx >= tx.max() + 1 - WINDOW_MS]
    fraud, score = data["fraud"][inside], data["score"][inside]
    flagged = data["decision"][inside] != "APPROVE"
    assert result.metrics.n == inside.size
    assert result.metrics.precision == pytest.approx(precision_score(fraud, flagged))
    assert result.metrics.recall == pytest.approx(recall_score(fraud, flagged))
    assert result.metrics.average_precision == pytest.approx(average_precision_score(fraud, score))

    # Read again from the start in one go (labels and predictions in whatever order the
    # fetches give): the same joins, the same metrics.
    again = evaluate(
        settings,
        OnlineEvaluator(window_ms=WINDOW_MS, keep_ms=WINDOW_MS, horizon_ms=HORIZON_MS),
        timeout=60,
        predictions=predictions,
        labels=labels,
    )
    assert again.join.counts.joined == len(labelled)
    assert again.current().metrics == result.metrics

    command = ["observe", "evaluate", "--predictions", predictions, "--labels", labels]
    assert main([*command, "--window", "100s", "--horizon", "60s"]) == 0
    out = capsys.readouterr().out
    assert f"precision {result.metrics.precision:.3f}" in out
    assert f"{len(UNLABELLED)} predictions got no label within the horizon" in out


def _follow_until(follower, check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    for _ in follower:
        if check():
            return
        assert time.monotonic() < deadline, "the reader did not see the records in time"


def test_feature_drift_reads_a_window_of_the_features_topic(settings):
    topic = _fresh(settings, "features-drift")
    rng = np.random.default_rng(12)
    serialize = PreparedSerializer.for_topic(settings, "features")
    producer = durable_producer(settings)
    t0, n = 1_600_000_000_000, 400  # two windows of 200 s, one record a second
    for i in range(n):
        ts = t0 + i * 1_000
        record = {name: 0 for name in feature_fields()}
        record.update(
            transaction_id=i,
            customer_id=i % 7,
            terminal_id=i % 11,
            tx_datetime=ts,
            feature_time=ts + 3,
            is_weekend=False,
            is_night=bool(i % 2),
            # Amounts move up in the second window; the night flag does not.
            tx_amount=float(rng.normal(50 if i < n // 2 else 90, 10)),
            terminal_distance=None if i % 10 == 0 else float(rng.random()),
        )
        producer.produce(topic, serialize(record), str(i % 7).encode(), timestamp=ts)
    assert producer.flush(30) == 0
    first = read_features_between(settings, t0, t0 + 200_000, topic=topic)
    last = read_features_between(settings, t0 + 200_000, t0 + 400_000, topic=topic)
    assert (len(first), len(last)) == (200, 200)
    assert first.attrs["undecodable"] == 0
    assert first["terminal_distance"].isna().sum() == 20
    table = drift_table(first, last)
    assert table.loc["tx_amount", "level"] == "major"
    assert table.loc["is_night", "level"] == "stable"
    assert table.index[0] == "tx_amount"
