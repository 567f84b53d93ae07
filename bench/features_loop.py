"""The customer windows written by hand: one confluent-kafka loop, no stream framework.

The feature benchmark runs this beside the Quix app to show what the framework costs.
It computes the same customer features (1/7/30-day count and mean amount, with the week 2
`customer_window` and the same ordering rules) and the calendar flags, but keeps each
customer's history in a plain dict in memory: no state store, no changelog, no
repartition, no joins, no dead-letter queue. Offsets are committed every second after the
producer has flushed, as Quix does under at-least-once.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_right, insort
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from rtml.clients import durable_producer
from rtml.config import Settings
from rtml.features.app import PARTITIONER
from rtml.features.definitions import MS_PER_DAY, WINDOW_DAYS, calendar_features
from rtml.features.labels import to_millis
from rtml.impl import exercise
from rtml.schemas import register
from rtml.schemas.wire import PreparedSerializer, WireDeserializer

_BATCH = 1000  # records per consume() call
_COMMIT_EVERY_S = 1.0
_KEEP_MS = max(WINDOW_DAYS) * MS_PER_DAY
_CUSTOMER_FIELDS = [
    {"name": f"customer_{what}_{d}d", "type": kind}
    for d in WINDOW_DAYS
    for what, kind in (("nb_tx", "long"), ("avg_amount", "double"))
]
SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "CustomerFeatures",
        "namespace": "rtml.bench",
        "doc": "A transaction with its customer windows, from the hand-written loop.",
        "fields": [
            {"name": "transaction_id", "type": "long"},
            {"name": "tx_datetime", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "customer_id", "type": "long"},
            {"name": "terminal_id", "type": "long"},
            {"name": "tx_amount", "type": "double"},
            {"name": "is_weekend", "type": "boolean"},
            {"name": "is_night", "type": "boolean"},
            *_CUSTOMER_FIELDS,
            {"name": "feature_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
)
Window = Callable[..., tuple[int, float]]


class CustomerHistory:
    """Every customer's recent transactions (times sorted, amounts alongside), in memory."""

    def __init__(self, window: Window | None = None) -> None:
        self.window: Window = window or exercise("customer_window")
        self.customers: dict[int, tuple[list[int], list[float]]] = {}

    def add(self, tx: dict[str, Any]) -> dict[str, Any]:
        """`tx` (tx_datetime in ms) with its calendar flags and customer windows.

        Like the app: history stays sorted when a transaction comes out of order, and
        anything older than the longest window is dropped. (The app also sends records
        older than its grace period to `transactions.late`; this loop has no such path.)
        """
        t, amount = tx["tx_datetime"], tx["tx_amount"]
        times, amounts = self.customers.setdefault(tx["customer_id"], ([], []))
        if not times or t >= times[-1]:
            times.append(t)
            amounts.append(amount)
        else:
            at = bisect_right(times, t)
            insort(times, t)
            amounts.insert(at, amount)
        cut = bisect_right(times, t - _KEEP_MS)
        if cut:
            del times[:cut]
            del amounts[:cut]
        out = dict(tx)
        out["is_weekend"], out["is_night"] = calendar_features(t)
        for d in WINDOW_DAYS:
            count, mean = self.window(times, amounts, t, d)
            out[f"customer_nb_tx_{d}d"] = count
            out[f"customer_avg_amount_{d}d"] = mean
        return out


def run_loop(settings: Settings, group: str, topic: str, stop: Callable[[], bool]) -> int:
    """Consume `transactions` in group `group`, write each one's customer features to
    `topic` (keyed by customer id) until `stop()` is true; return the records written."""
    encode = PreparedSerializer(SCHEMA, register(settings, topic, SCHEMA))
    decode = WireDeserializer.for_topic(settings, "transactions")
    consumer = Consumer(
        settings.client_config(
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_wait_max_ms=20,
        )
    )
    # The same producer settings as the feature app's (Quix adds idempotence, acks=all).
    producer = durable_producer(
        settings, quiet=True, partitioner=PARTITIONER, linger_ms=5, compression_type="lz4"
    )
    history = CustomerHistory()
    produce, poll = producer.produce, producer.poll
    written = 0
    next_commit = time.monotonic() + _COMMIT_EVERY_S
    consumer.subscribe(["transactions"])
    try:
        while not stop():
            for msg in consumer.consume(_BATCH, timeout=0.1):
                if msg.error() is not None:
                    continue
                tx = decode(msg.value())
                tx["tx_datetime"] = to_millis(tx["tx_datetime"])
                record = history.add(tx)
                record["feature_time"] = time.time_ns() // 1_000_000
                while True:
                    try:
                        produce(topic, encode(record), msg.key())
                        break
                    except BufferError:  # librdkafka's queue is full: let it drain
                        poll(0.05)
                written += 1
            poll(0)
            if time.monotonic() >= next_commit:
                _commit(producer, consumer)
                next_commit = time.monotonic() + _COMMIT_EVERY_S
        _commit(producer, consumer)
    finally:
        consumer.close()
    return written


def _commit(producer: Producer, consumer: Consumer) -> None:
    """At-least-once: commit the offsets consumed once Kafka has acknowledged their output."""
    producer.flush()
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:  # nothing consumed since the last one
            raise
