"""What the Flow page reads, on the live test cluster: end offsets, rates, lag verdicts, tails."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic

from rtml import topics
from rtml.clients import create_missing_topics, durable_producer
from rtml.observe.lagboard import LagBoard, group_table, lag_table
from rtml.observe.tail import TailError, tail
from rtml.observe.throughput import ThroughputTracker, end_offsets
from rtml.schemas import register_all
from rtml.simulate.producer import PreparedSerializer

PARTITIONS = 3


@pytest.fixture(scope="module")
def settings(cluster_settings):
    topics.apply(cluster_settings)
    register_all(cluster_settings)
    return cluster_settings


@pytest.fixture()
def topic(settings) -> str:
    """A fresh topic of 3 partitions, so counts and offsets are exact."""
    name = f"flow-test-{uuid.uuid4().hex[:8]}"
    create_missing_topics(settings, [NewTopic(name, PARTITIONS, 3)])
    # Created means the controller has it; wait until the brokers serve its offsets too.
    deadline = time.monotonic() + 30
    while end_offsets(settings, [name]) != {name: 0}:
        assert time.monotonic() < deadline, f"{name} has no leaders yet"
        time.sleep(0.2)
    return name


def _produce(settings, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    """Produce (key, value) pairs in order to partition i % 3, all acknowledged."""
    producer = durable_producer(settings)
    for i, (key, value) in enumerate(values):
        producer.produce(topic, value, key, partition=i % PARTITIONS, timestamp=1_000_000 + i)
    assert producer.flush(30) == 0


def test_end_offsets_count_every_record_and_the_tracker_turns_them_into_a_rate(settings, topic):
    tracker = ThroughputTracker()
    tracker.sample(settings, [topic])
    assert tracker.totals() == {topic: 0}
    _produce(settings, topic, [(b"k", b"x" * i) for i in range(30)])
    assert end_offsets(settings, [topic, "no-such-topic"]) == {topic: 30}
    tracker.sample(settings, [topic])
    assert tracker.totals() == {topic: 30}
    (earlier, later) = tracker.samples
    assert tracker.latest()[topic] == pytest.approx(30 / (later.timestamp - earlier.timestamp))


def test_tail_returns_the_newest_records_across_partitions(settings, topic):
    _produce(settings, topic, [(f"key-{i}".encode(), b"v" * i) for i in range(30)])
    records = tail(settings, topic, n=5)
    # Timestamps 1_000_000 + i: the newest five are i = 25..29, oldest first.
    assert list(records["key"]) == [f"key-{i}" for i in range(25, 30)]
    assert list(records["value_bytes"]) == list(range(25, 30))
    assert list(records["partition"]) == [i % PARTITIONS for i in range(25, 30)]
    assert list(records["offset"]) == [i // PARTITIONS for i in range(25, 30)]
    assert records["timestamp"].dt.tz is not None
    assert len(tail(settings, topic, n=100)) == 30


def test_tail_decodes_avro_through_the_registry(settings, topic):
    serialize = PreparedSerializer.for_topic(settings, "transactions")
    rows = [
        {
            "transaction_id": i,
            "tx_datetime": 1_700_000_000_000 + i,
            "customer_id": 40 + i,
            "terminal_id": 7,
            "tx_amount": 12.5 * i,
        }
        for i in range(6)
    ]
    _produce(settings, topic, [(str(r["customer_id"]).encode(), serialize(r)) for r in rows])
    records = tail(settings, topic, n=3)
    assert list(records["transaction_id"]) == [3, 4, 5]
    assert list(records["customer_id"]) == [43, 44, 45]
    assert list(records["tx_amount"]) == [37.5, 50.0, 62.5]
    assert "value_bytes" not in records.columns


def test_tail_of_an_empty_or_unknown_topic(settings, topic):
    assert tail(settings, topic).empty
    with pytest.raises(TailError, match="does not exist"):
        tail(settings, "no-such-topic")
    with pytest.raises(TailError, match="1 to 1000 records"):
        tail(settings, topic, n=0)


def test_lag_board_judges_a_group_nobody_reads_as_stop(settings, topic):
    _produce(settings, topic, [(b"k", b"v")] * 12)
    group = f"flow-board-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(settings.client_config(group_id=group, enable_auto_commit=False))
    try:
        offsets = [TopicPartition(topic, p, 1) for p in range(PARTITIONS)]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()
    board = LagBoard(settings)
    first = {r.group: r for r in board.refresh()}[group]
    assert first.status == "UNKNOWN"  # one look is no trend
    second = {r.group: r for r in board.refresh()}[group]
    assert second.status == "STOP"
    assert second.total_lag == 12 - PARTITIONS
    rows = lag_table([second])
    assert list(rows["committed"]) == [1, 1, 1]
    assert list(rows["lag"]) == [3, 3, 3]
    assert list(rows["end"]) == [4, 4, 4]
    summary = group_table([second]).iloc[0]
    assert (summary["members"], summary["lag"], summary["status"]) == (0, 9, "STOP")
