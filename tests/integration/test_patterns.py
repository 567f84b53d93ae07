"""Producer and consumer patterns on the live cluster: the guarantees behave as taught."""

import time
import uuid

import pytest
from confluent_kafka.admin import NewTopic

from rtml.clients import create_missing_topics
from rtml.patterns.consumer import (
    AT_LEAST_ONCE,
    AT_MOST_ONCE,
    Backpressure,
    RebalanceLog,
    consume,
    end_offsets,
    group_consumer,
    read_and_commit,
    read_from,
    seek_to_time,
)
from rtml.patterns.producer import measure, skew
from rtml.topics import TopicError

N = 200


def _topic(settings, partitions=3) -> str:
    name = f"patterns-{uuid.uuid4().hex[:8]}"
    create_missing_topics(settings, [NewTopic(name, partitions, 3)])
    return name


def _fill(settings, topic, n=N, key=lambda i: str(i % 10).encode()):
    run = measure(settings, topic, ((key(i), str(i).encode()) for i in range(n)), "durable")
    assert run.acked == n and run.failed == 0
    return run


def _run_twice(settings, topic, guarantee):
    """Consume with a crash after 50 records, then again to the end; count each record."""
    group = f"g-{uuid.uuid4().hex[:6]}"
    seen: list[int] = []
    record = lambda m: seen.append(int(m.value()))  # noqa: E731
    consume(settings, topic, group, record, guarantee, crash_after=50)
    # The crashed member holds its partitions until its session times out; a new member
    # with the same group id gets them after that rebalance.
    consume(settings, topic, group, record, guarantee)
    return seen


def test_at_least_once_redelivers_after_a_crash_and_loses_nothing(cluster_settings):
    topic = _topic(cluster_settings, partitions=1)
    _fill(cluster_settings, topic)
    seen = _run_twice(cluster_settings, topic, AT_LEAST_ONCE)
    assert set(seen) == set(range(N))
    assert len(seen) == N + 1  # the record processed but not committed came again


def test_at_most_once_loses_a_record_after_a_crash_and_duplicates_nothing(cluster_settings):
    topic = _topic(cluster_settings, partitions=1)
    _fill(cluster_settings, topic)
    seen = _run_twice(cluster_settings, topic, AT_MOST_ONCE)
    assert len(seen) == len(set(seen)) == N - 1  # committed, never processed: gone
    assert set(range(N)) - set(seen) == {49}


def test_profiles_report_rates_latency_and_spread(cluster_settings):
    topic = _topic(cluster_settings, partitions=6)
    runs = {
        p: measure(cluster_settings, topic, ((str(i).encode(), b"x" * 200) for i in range(3000)), p)
        for p in ("fire-and-forget", "durable", "durable-batched")
    }
    for run in runs.values():
        assert run.acked == 3000 and run.rate > 0
        assert sum(run.partitions.values()) == 3000
    # Keys spread evenly over partitions; one hot key puts everything in one partition.
    assert skew(runs["durable"].partitions, 6) < 1.5
    hot = measure(cluster_settings, topic, ((b"same", b"x") for _ in range(600)), "durable")
    assert len(hot.partitions) == 1 and skew(hot.partitions, 6) == 6.0


def test_rebalance_callbacks_show_partitions_moving(cluster_settings):
    topic = _topic(cluster_settings, partitions=6)
    _fill(cluster_settings, topic, n=60)
    group = f"g-{uuid.uuid4().hex[:6]}"
    log_a, log_b = RebalanceLog(), RebalanceLog()
    a, b = group_consumer(cluster_settings, group), group_consumer(cluster_settings, group)
    a.subscribe([topic], on_assign=log_a.on_assign, on_revoke=log_a.on_revoke)
    deadline = time.monotonic() + 60
    while len(log_a.assigned) < 6 and time.monotonic() < deadline:
        a.poll(0.2)
    assert log_a.assigned == list(range(6))
    b.subscribe([topic], on_assign=log_b.on_assign, on_revoke=log_b.on_revoke)
    while (not log_b.assigned or len(log_a.assigned) == 6) and time.monotonic() < deadline:
        a.poll(0.1)
        b.poll(0.1)
    assert sorted(log_a.assigned + log_b.assigned) == list(range(6))
    assert log_a.assigned and log_b.assigned
    assert any(kind == "revoked" for _, kind, _ in log_a.events)
    a.close()
    b.close()


def test_seek_by_timestamp_replays_from_that_time(cluster_settings):
    from confluent_kafka import Producer

    topic = _topic(cluster_settings, partitions=3)
    producer = Producer(cluster_settings.client_config(acks="all"))
    base = 1_600_000_000_000
    for i in range(30):
        producer.produce(
            topic, key=str(i % 3).encode(), value=str(i).encode(), timestamp=base + i * 1000
        )
    producer.flush(30)
    consumer = group_consumer(cluster_settings, f"g-{uuid.uuid4().hex[:6]}")
    seek_to_time(consumer, topic, base + 20_000)
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 10 and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            got.append(int(msg.value()))
    consumer.close()
    assert sorted(got) == list(range(20, 30))


def test_backpressure_pauses_and_resumes(cluster_settings):
    topic = _topic(cluster_settings, partitions=3)
    _fill(cluster_settings, topic, n=300)
    consumer = group_consumer(cluster_settings, f"g-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([topic])
    gate = Backpressure(high=50, low=10)
    buffer: list = []
    done = 0
    deadline = time.monotonic() + 60
    while done < 300 and time.monotonic() < deadline:
        buffer += [m for m in consumer.consume(20, timeout=0.2) if not m.error()]
        gate.update(consumer, len(buffer))
        if gate.paused:
            assert consumer.consume(20, timeout=0.3) == []  # paused: nothing more arrives
            done += len(buffer)  # the slow stage catches up
            buffer.clear()
            gate.update(consumer, len(buffer))
    consumer.close()
    assert done + len(buffer) == 300
    assert gate.pauses >= 1


def test_stop_ends_a_consumer_at_once_and_keeps_what_it_committed(cluster_settings):
    topic = _topic(cluster_settings)
    _fill(cluster_settings, topic)
    group = f"g-{uuid.uuid4().hex[:6]}"
    seen: list[int] = []
    record = lambda m: seen.append(int(m.value()))  # noqa: E731
    started = time.monotonic()
    n = consume(
        cluster_settings, topic, group, record, idle_timeout=60, stop=lambda: len(seen) >= 30
    )
    assert n == 30 and len(seen) == 30
    assert time.monotonic() - started < 40  # not the 60 s idle timeout
    consume(cluster_settings, topic, group, record)
    assert sorted(seen) == list(range(N))  # the rest, once each: the 30 were committed


def test_read_from_shows_exactly_what_was_written_after_the_mark(cluster_settings):
    from confluent_kafka import Producer

    topic = _topic(cluster_settings, partitions=3)
    _fill(cluster_settings, topic, n=60)
    before = end_offsets(cluster_settings, topic)
    assert set(before) == {0, 1, 2} and sum(before.values()) == 60
    producer = Producer(cluster_settings.client_config(acks="all"))
    base = 1_522_540_800_000  # 2018-04-01: a timestamp from the past, kept as written
    for i in range(9):
        producer.produce(topic, value=f"new-{i}".encode(), partition=i % 3, timestamp=base + i)
    assert producer.flush(30) == 0

    got = read_from(cluster_settings, topic, before, per_partition=2)
    assert sorted(r.value for r in got) == [f"new-{i}".encode() for i in range(6)]
    assert [r.timestamp_ms for r in got] == [base + i for i in range(6)]  # sorted by time
    assert all(before[r.partition] <= r.offset < before[r.partition] + 2 for r in got)
    assert {r.timestamp_type for r in got} == {"create time"}
    assert read_from(cluster_settings, topic, end_offsets(cluster_settings, topic)) == []
    with pytest.raises(TopicError, match="no-such-topic"):
        end_offsets(cluster_settings, "no-such-topic")


def test_read_from_decodes_avro_values_of_a_catalogue_topic(cluster_settings):
    from confluent_kafka.serialization import MessageField, SerializationContext

    from rtml import topics
    from rtml.clients import durable_producer
    from rtml.schemas import avro_serializer, register_all

    topics.apply(cluster_settings)
    register_all(cluster_settings)
    before = end_offsets(cluster_settings, "transactions")
    txn = {
        "transaction_id": 77,
        "tx_datetime": 1_522_540_800_000,
        "customer_id": 5,
        "terminal_id": 9,
        "tx_amount": 12.5,
    }
    serialize = avro_serializer(cluster_settings, "transactions")
    producer = durable_producer(cluster_settings)
    value = serialize(txn, SerializationContext("transactions", MessageField.VALUE))
    producer.produce("transactions", key=b"5", value=value, timestamp=txn["tx_datetime"])
    assert producer.flush(30) == 0
    mine = [
        r
        for r in read_from(cluster_settings, "transactions", before, per_partition=50)
        if r.value["transaction_id"] == 77 and r.key == b"5"
    ]
    assert len(mine) == 1 and mine[0].value["tx_amount"] == 12.5
    assert mine[0].timestamp_ms == txn["tx_datetime"]


def test_read_and_commit_reads_n_commits_and_stays_in_the_group(cluster_settings):
    from confluent_kafka import TopicPartition

    topic = _topic(cluster_settings, partitions=3)
    _fill(cluster_settings, topic, n=90)
    consumer = group_consumer(cluster_settings, f"g-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([topic])
    try:
        assert read_and_commit(consumer, 20) == 20
        committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        assert sum(max(tp.offset, 0) for tp in committed) == 20
        assert len(consumer.assignment()) == 3  # still a member, holding its partitions
    finally:
        consumer.close()
