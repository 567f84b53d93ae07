"""The label table (a global table read by every feature-app process) on the live cluster."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from rtml.clients import create_missing_topics
from rtml.features.definitions import MS_PER_DAY
from rtml.features.labels import LabelTable
from rtml.poll import until
from rtml.schemas import register_all
from rtml.schemas.wire import PreparedSerializer


def test_an_empty_topic_is_caught_up_at_once_and_new_labels_count(cluster_settings) -> None:
    """An empty label partition used to look "not read yet" until its first record, so each
    transaction waited the table's whole timeout while the topic was empty."""
    settings = cluster_settings
    register_all(settings)
    topic = f"labels-test-{uuid.uuid4().hex[:6]}"
    assert create_missing_topics(settings, [NewTopic(topic, 6, 1)]) == [topic]
    table = LabelTable(settings, topic=topic, wait_s=5.0)
    table.start()
    try:
        now = int(time.time() * 1000)
        started = time.monotonic()
        assert table.catch_up(now)
        assert time.monotonic() - started < 2.0 and table.stale_reads == 0
        assert table.window(7, now, 7) == (0, 0.0)

        encode = PreparedSerializer.for_topic(settings, "labels")
        producer = Producer(settings.client_config(acks="all"))
        tx_ms = now - 8 * MS_PER_DAY  # inside the 7-day window that ends a week back
        for i, fraud in enumerate((True, False)):
            label = {
                "transaction_id": i,
                "customer_id": 1,
                "terminal_id": 7,
                "tx_fraud": fraud,
                "tx_datetime": tx_ms,
                "label_time": now - MS_PER_DAY,
            }
            producer.produce(topic, encode(label), str(i).encode(), timestamp=now - MS_PER_DAY)
        assert producer.flush(10) == 0
        # Once the table has seen the new end offsets, it reads the labels before it answers.
        until(lambda: table.catch_up(now) and table.labels_read == 2, 30, "both labels", 0.05)
        assert table.window(7, now, 7) == (2, 0.5)
    finally:
        table.close()
