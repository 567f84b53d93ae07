"""Durability under crashes: acks=all + idempotence + RF 3 + min ISR 2 lose nothing acknowledged."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, defaultdict

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic

from rtml.clients import admin, durable_producer
from rtml.cluster import get_status
from rtml.impl import exercise

N_RECORDS = 100_000
N_CUSTOMERS = 1_000


def _topic(settings) -> str:
    name = f"durability-{uuid.uuid4().hex[:8]}"
    client = admin(settings)  # keep a reference: a collected client cancels its futures
    fut = client.create_topics(
        [NewTopic(name, 6, 3, config={"min.insync.replicas": "2"})], operation_timeout=30
    )
    fut[name].result(timeout=60)
    return name


class Reader(threading.Thread):
    """Reads every partition from the start (no group, no commits) and records what it sees."""

    def __init__(self, settings, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(
            settings.client_config(
                group_id=f"reader-{uuid.uuid4().hex[:6]}", enable_auto_commit=False
            )
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(6)])
        self.seen: Counter[int] = Counter()
        self.order: dict[bytes, list[int]] = defaultdict(list)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for msg in self.consumer.consume(1000, timeout=0.2):
                if msg.error():
                    continue
                tid = json.loads(msg.value())["transaction_id"]
                self.seen[tid] += 1
                self.order[msg.key()].append(tid)
        self.consumer.close()

    def wait_for(self, wanted: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not wanted <= self.seen.keys():
            time.sleep(0.2)
        self.stop.set()
        self.join(10)


def _produce(producer, topic, ids, acked, failed):
    key = exercise("partition_key")

    def report(err, msg):
        tid = json.loads(msg.value())["transaction_id"]
        (failed if err else acked).append(tid)

    for tid in ids:
        txn = {"transaction_id": tid, "customer_id": tid % N_CUSTOMERS, "tx_amount": 1.0}
        while True:
            try:
                producer.produce(topic, key=key(txn), value=json.dumps(txn), on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)


def test_leader_crash_mid_stream_loses_and_duplicates_nothing(local_cluster, cluster_settings):
    topic = _topic(cluster_settings)
    reader = Reader(cluster_settings, topic)
    reader.start()
    producer = durable_producer(
        cluster_settings, quiet=True, linger_ms=5, message_timeout_ms=120_000
    )
    acked: list[int] = []
    failed: list[int] = []
    chunk = N_RECORDS // 10
    victim = None
    for start in range(0, N_RECORDS, chunk):
        _produce(producer, topic, range(start, start + chunk), acked, failed)
        if start == 3 * chunk:
            producer.flush(60)
            # Crash the broker that leads the most partitions of this topic, mid-stream.
            leaders = Counter(
                p.leader for p in get_status(cluster_settings).partitions if p.topic == topic
            )
            victim = leaders.most_common(1)[0][0]
            local_cluster.kill(victim)
    assert producer.flush(180) == 0
    assert victim is not None
    assert not failed, f"{len(failed)} records failed although 2 of 3 replicas were up"
    assert len(acked) == N_RECORDS

    reader.wait_for(set(acked), timeout=120)
    missing = set(acked) - reader.seen.keys()
    duplicated = [tid for tid, n in reader.seen.items() if n > 1]
    assert not missing, f"{len(missing)} acknowledged records were lost"
    assert not duplicated, f"{len(duplicated)} records were read more than once"
    for key, ids in reader.order.items():
        assert ids == sorted(ids), f"customer {key!r} out of order"

    status = get_status(cluster_settings)
    assert all(p.leader != victim for p in status.partitions if p.topic == topic)
    assert status.brokers_up == 2

    local_cluster.restart(victim)
    status = get_status(cluster_settings)
    assert status.brokers_up == 3
    assert status.not_in_isr(victim) == []


def test_two_of_three_down_reports_errors_and_keeps_acknowledged(local_cluster, cluster_settings):
    topic = _topic(cluster_settings)
    producer = durable_producer(cluster_settings, quiet=True, linger_ms=5, message_timeout_ms=8_000)
    acked: list[int] = []
    failed: list[int] = []
    _produce(producer, topic, range(0, 1000), acked, failed)
    assert producer.flush(60) == 0 and len(acked) == 1000

    local_cluster.kill(1)
    local_cluster.kill(2)
    _produce(producer, topic, range(1000, 2000), acked, failed)
    assert producer.flush(60) == 0
    # Every record got exactly one delivery report, and the loss of quorum showed as errors.
    assert sorted(acked + failed) == list(range(2000))
    assert len(failed) > 0, "with 2 of 3 brokers down, writes with acks=all must fail"

    local_cluster.restart(1)
    local_cluster.restart(2)
    reader = Reader(cluster_settings, topic)
    reader.start()
    reader.wait_for(set(acked), timeout=120)
    assert set(acked) <= reader.seen.keys(), "an acknowledged record was lost"
