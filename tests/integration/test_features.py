"""The feature app on the live cluster: stream == batch, crash recovery, poison input.

The app runs as `rtml features run` in a subprocess, as in the lab. This module starts
from empty input and output topics (deleted and created again), so the features topic holds
exactly what the app wrote here.
"""

from __future__ import annotations

import io
import json
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema
from fastavro import parse_schema, schemaless_writer

from rtml import topics
from rtml.clients import admin
from rtml.dlq import read_origin
from rtml.features.batch import batch_features
from rtml.features.definitions import FEATURE_COLUMNS
from rtml.features.labels import to_millis
from rtml.features.windows import read_windows
from rtml.schemas import load_schema, register_all, registry_client
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.simulate import SimulationParams, simulate
from rtml.simulate.producer import publish_reference, replay

TOPICS = (
    "transactions",
    "customers",
    "terminals",
    "labels",
    "features",
    "windows",
    "features.dlq",
    "transactions.late",
    "transactions.labelled",
)
COLUMNS = [*FEATURE_COLUMNS, "terminal_distance"]


def _recreate(settings, names) -> None:
    """Delete `names` and create them again from the catalogue (empty, same specs)."""
    client = admin(settings, timeout=10)
    existing = set(client.list_topics(timeout=10).topics)
    doomed = [n for n in names if n in existing]
    if doomed:
        for future in client.delete_topics(doomed, operation_timeout=30).values():
            future.result()
    deadline = time.monotonic() + 60
    while set(doomed) & set(client.list_topics(timeout=10).topics):
        assert time.monotonic() < deadline, f"topics {doomed} were not deleted"
        time.sleep(0.2)
    while True:
        try:
            topics.apply(settings)
            break
        except topics.TopicError:
            # A deletion can still be settling on a broker; try again shortly.
            assert time.monotonic() < deadline, "topics were not created again"
            time.sleep(0.5)
    # Created is not yet served: wait until every partition has a leader that answers.
    for name in names:
        while True:
            try:
                _count(settings, name)
                break
            except KafkaException:
                assert time.monotonic() < deadline, f"topic {name} has no leaders"
                time.sleep(0.2)


def _count(settings, topic: str) -> int:
    consumer = Consumer(settings.client_config(group_id=f"count-{uuid.uuid4().hex[:6]}"))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def _read_all(settings, topic: str) -> list:
    """Every record of `topic` (committed records only)."""
    consumer = Consumer(
        settings.client_config(
            group_id=f"read-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        left = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                left[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in left])
        out = []
        deadline = time.monotonic() + 120
        idle = 0
        # Transaction markers and aborted records are never delivered, so the last offsets
        # of a transactional topic may never show: 3 s without a record also ends the read
        # (nothing writes while a test reads).
        while left and idle < 3 and time.monotonic() < deadline:
            batch = consumer.consume(2000, timeout=1)
            idle = 0 if batch else idle + 1
            for msg in batch:
                if msg.error() is None:
                    out.append(msg)
                    if msg.offset() + 1 >= left.get(msg.partition(), 1 << 62):
                        del left[msg.partition()]
        assert time.monotonic() < deadline, f"could not read {topic} to its end"
        return out
    finally:
        consumer.close()


def _features(settings) -> pd.DataFrame:
    decode = WireDeserializer.for_topic(settings, "features")
    rows = []
    for msg in _read_all(settings, "features"):
        value = decode(msg.value())
        value["tx_datetime"] = to_millis(value["tx_datetime"])
        assert msg.key() == str(value["customer_id"]).encode()
        rows.append(value)
    return pd.DataFrame(rows)


def _assert_equal(stream: pd.DataFrame, batch: pd.DataFrame) -> None:
    stream = stream.set_index("transaction_id").sort_index()
    assert stream.index.equals(batch.index)
    for column in COLUMNS:
        left, right = stream[column].to_numpy(), batch[column].to_numpy()
        if right.dtype.kind == "f":
            np.testing.assert_allclose(
                left.astype(float), right, rtol=1e-9, atol=1e-9, err_msg=column
            )
        else:
            np.testing.assert_array_equal(left, right, err_msg=column)


class FeatureProcess:
    """`rtml features run` in a subprocess, with its output kept for failure messages."""

    def __init__(self, group: str, *args: str) -> None:
        self.log = io.StringIO()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtml", "features", "run", "--group", group, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def output(self) -> str:
        if self.proc.poll() is not None and self.proc.stdout:
            self.log.write(self.proc.stdout.read())
        return self.log.getvalue()[-3000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait_for(settings, topic: str, n: int, proc: FeatureProcess, timeout: float) -> float:
    """Poll until `topic` holds at least `n` records; return the seconds it took."""
    start = time.monotonic()
    while _count(settings, topic) < n:
        assert proc.proc.poll() is None, f"the feature app exited:\n{proc.output()}"
        assert time.monotonic() - start < timeout, (
            f"{topic} has {_count(settings, topic)} of {n} records after {timeout:.0f} s"
        )
        time.sleep(0.5)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def history(cluster_settings):
    """A 45-day history (every window fills) replayed into fresh topics."""
    settings = cluster_settings
    _recreate(settings, TOPICS)
    register_all(settings)
    sim = simulate(SimulationParams(n_customers=70, n_terminals=140, n_days=45, seed=21))
    publish_reference(settings, sim)
    report = replay(settings, sim, progress=False)
    assert report.ok
    batch = batch_features(sim.transactions, sim.labels, sim.customers, sim.terminals)
    return settings, sim, batch


@pytest.fixture()
def fresh_features(history) -> Iterator[None]:
    settings = history[0]
    _recreate(settings, TOPICS[4:])
    yield


def test_stream_equals_batch_for_every_transaction_and_feature(history, fresh_features) -> None:
    settings, sim, batch = history
    n = len(sim.transactions)
    app = FeatureProcess(f"feat-{uuid.uuid4().hex[:6]}")
    try:
        _wait_for(settings, "features", n, app, timeout=600)
        # The last week's labels come after the last transaction.
        _wait_for(settings, "transactions.labelled", n, app, timeout=120)
    finally:
        app.stop()
    stream = _features(settings)
    assert len(stream) == n, "an uninterrupted run writes each transaction's features once"
    _assert_equal(stream, batch)
    # The stream-stream join paired every transaction with its label, days later.
    labelled = [json.loads(m.value()) for m in _read_all(settings, "transactions.labelled")]
    truth = sim.transactions.set_index("transaction_id")["tx_fraud"]
    assert sorted(r["transaction_id"] for r in labelled) == sorted(truth.index)
    assert all(r["tx_fraud"] == bool(truth[r["transaction_id"]]) for r in labelled)
    assert {r["label_delay_ms"] for r in labelled} == {7 * 86_400_000}
    # The live windows ran on the same stream: a busy customer has closed windows of
    # every kind, each within its bounds.
    busiest = int(sim.transactions["customer_id"].value_counts().idxmax())
    windows = read_windows(settings, busiest)
    assert {w["kind"] for w in windows} == {"tumbling", "hopping", "sliding", "session", "count"}
    assert all(w["start"] < w["end"] for w in windows)


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_a_crash_mid_run_loses_nothing_and_changes_nothing(
    history, fresh_features, guarantee
) -> None:
    """SIGKILL mid-window, restart: deduplicated by transaction id, the output is exactly
    the uninterrupted one (which the test above proves equals the batch features). Under
    exactly-once, a read_committed reader sees no duplicate at all."""
    settings, sim, batch = history
    n = len(sim.transactions)
    group = f"crash-{uuid.uuid4().hex[:6]}"
    first = FeatureProcess(group, "--guarantee", guarantee)
    try:
        _wait_for(settings, "features", n // 3, first, timeout=600)
    finally:
        first.stop(signal.SIGKILL)
    assert first.proc.returncode == -signal.SIGKILL
    # Offsets, not records: under exactly-once they include aborted writes and markers.
    killed_at = _count(settings, "features")
    assert len(_features(settings)) < n, "the crash should come before the end of the history"
    second = FeatureProcess(group, "--guarantee", guarantee)
    try:
        recovery = _wait_for(settings, "features", killed_at + 1, second, timeout=300)
        # From the restart to the first new feature: start-up, state restored from the
        # changelog, labels re-read. Shown with -s; docs/architecture.md quotes it.
        print(f"\nfeature app recovery: {recovery:.1f} s to the first new record")
        # Every transaction id must arrive; replays after the crash may add duplicates.
        deadline = time.monotonic() + 600
        while True:
            stream = _features(settings)
            if stream["transaction_id"].nunique() == n:
                break
            assert second.proc.poll() is None, second.output()
            assert time.monotonic() < deadline, "not every transaction got its features"
            time.sleep(1)
    finally:
        second.stop()
    duplicates = stream[stream.duplicated("transaction_id", keep=False)]
    if guarantee == "exactly-once":
        assert duplicates.empty, "aborted transactions must stay invisible to read_committed"
    # Reprocessed records give the same features as their first run (state was restored).
    for _, same in duplicates.groupby("transaction_id"):
        assert (same[COLUMNS].nunique(dropna=False) == 1).all()
    _assert_equal(stream.drop_duplicates("transaction_id"), batch)


def _without_amount() -> dict:
    """The transaction schema minus tx_amount: records written with it cannot be read."""
    schema = json.loads(load_schema("transaction"))
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "tx_amount"]
    return schema


def test_poison_and_late_records_are_routed_and_counted(history, fresh_features) -> None:
    """in == out + dlq + late, and each rejected record says where it came from."""
    settings, sim, _ = history
    encode = PreparedSerializer.for_topic(settings, "transactions")
    last = sim.transactions.sort_values("event_time_ms").groupby("customer_id").last()
    customer = int(last.index[0])
    t_last = int(last.loc[customer, "event_time_ms"])
    next_id = int(sim.transactions["transaction_id"].max()) + 1
    now = int(time.time() * 1000)

    def tx(i: int, **change) -> dict:
        base = {
            "transaction_id": next_id + i,
            "tx_datetime": t_last + 1000 * (i + 1),
            "customer_id": customer,
            "terminal_id": int(last.loc[customer, "terminal_id"]),
            "tx_amount": 10.0,
        }
        return {**base, **change}

    schema = _without_amount()
    missing_id = registry_client(settings).register_schema(
        "rtml-test-poison-value", Schema(json.dumps(schema), "AVRO")
    )
    no_amount = parse_schema(schema)
    body = io.BytesIO()
    schemaless_writer(body, no_amount, {k: v for k, v in tx(9).items() if k != "tx_amount"})
    poison = {
        "garbage": b"\x13not avro at all",
        "unknown schema id": b"\x00" + struct.pack(">I", 987654) + b"\x02",
        "missing field": b"\x00" + struct.pack(">I", missing_id) + body.getvalue(),
        "negative amount": encode(tx(1, tx_amount=-5.0)),
        "nan amount": encode(tx(2, tx_amount=float("nan"))),
        "far future": encode(tx(3, tx_datetime=now + 3 * 86_400_000)),
    }
    valid = [encode(tx(i)) for i in range(4, 9)]
    late = [encode(tx(10, tx_datetime=t_last - 2 * 86_400_000))]
    # murmur2, like every rtml producer: the customer's records share its partition.
    producer = Producer(
        settings.client_config(acks="all", enable_idempotence=True, partitioner="murmur2_random")
    )
    key = str(customer).encode()
    for value in [*poison.values(), *valid, *late]:
        producer.produce("transactions", value, key)
    assert producer.flush(30) == 0

    total_in = len(sim.transactions) + len(poison) + len(valid) + len(late)
    app = FeatureProcess(f"poison-{uuid.uuid4().hex[:6]}")
    try:
        _wait_for(settings, "features", len(sim.transactions) + len(valid), app, timeout=600)
        _wait_for(settings, "features.dlq", len(poison), app, timeout=60)
        _wait_for(settings, "transactions.late", len(late), app, timeout=60)
    finally:
        app.stop()
    out = _count(settings, "features")
    dlq = _read_all(settings, "features.dlq")
    late_records = _read_all(settings, "transactions.late")
    assert total_in == out + len(dlq) + len(late_records)
    assert sorted(m.value() for m in dlq) == sorted(poison.values())
    for msg in dlq:
        origin = read_origin(msg.headers())
        assert origin["topic"] == "transactions"
        assert origin["stage"] == "features"
        assert int(origin["offset"]) >= 0 and origin["group"].startswith("poison-")
        assert origin["error"], "the DLQ record says why it was rejected"
        assert msg.key() == key
    assert late_records[0].value() == late[0]
    assert read_origin(late_records[0].headers())["error"].startswith("late by")
