"""Durability under crashes: acks=all + idempotence + RF 3 + min ISR 2 lose nothing acknowledged."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict

from confluent_kafka.admin import NewTopic

from rtml.chaos.load import json_id, json_value
from rtml.chaos.verifier import Ledger, Reader, verdict_of
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


def _produce(producer, topic, ids, ledger: Ledger) -> None:
    key = exercise("partition_key")

    def report(err, msg):
        tid = json_id(msg)
        if err:
            ledger.fail(tid, err.name())
        else:
            ledger.ack(msg.key(), tid)

    for tid in ids:
        txn = {"transaction_id": tid, "customer_id": tid % N_CUSTOMERS, "tx_amount": 1.0}
        while True:
            try:
                producer.produce(
                    topic,
                    key=key(txn),
                    value=json_value(tid, tid % N_CUSTOMERS),
                    on_delivery=report,
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)


def test_leader_crash_mid_stream_loses_and_duplicates_nothing(local_cluster, cluster_settings):
    topic = _topic(cluster_settings)
    reader = Reader(cluster_settings, topic, json_id)
    reader.start()
    producer = durable_producer(
        cluster_settings, quiet=True, linger_ms=5, message_timeout_ms=120_000
    )
    ledger = Ledger()
    chunk = N_RECORDS // 10
    victim = None
    for start in range(0, N_RECORDS, chunk):
        _produce(producer, topic, range(start, start + chunk), ledger)
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
    acked, failed = ledger.snapshot()
    assert not failed, f"{len(failed)} records failed although 2 of 3 replicas were up"
    assert len(acked) == N_RECORDS

    reader.wait_for(ledger.acked_ids, timeout=120)
    verdict = verdict_of(ledger, reader)
    assert verdict.lost == 0, f"{verdict.lost} acknowledged records were lost"
    assert verdict.duplicated == 0, f"{verdict.duplicated} records were stored more than once"
    assert verdict.reread == 0, f"{verdict.reread} records were read more than once"
    # Each customer's ids were produced in increasing order: they must be read so.
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for read in reader.reads:
        by_key[read.key].append(read.id)
    for key, ids in by_key.items():
        assert ids == sorted(ids), f"customer {key!r} out of order"
    assert verdict.out_of_order == 0

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
    ledger = Ledger()
    _produce(producer, topic, range(0, 1000), ledger)
    assert producer.flush(60) == 0 and ledger.counts == (1000, 0)

    local_cluster.kill(1)
    local_cluster.kill(2)
    _produce(producer, topic, range(1000, 2000), ledger)
    assert producer.flush(60) == 0
    # Every record got exactly one delivery report, and the loss of quorum showed as errors.
    acked, failed = ledger.snapshot()
    assert sorted([i for _, i in acked] + failed) == list(range(2000))
    assert len(failed) > 0, "with 2 of 3 brokers down, writes with acks=all must fail"

    local_cluster.restart(1)
    local_cluster.restart(2)
    reader = Reader(cluster_settings, topic, json_id)
    reader.start()
    reader.wait_for(ledger.acked_ids, timeout=120)
    assert verdict_of(ledger, reader).lost == 0, "an acknowledged record was lost"
