"""The last records of a topic, decoded: what `tail -n` is to a log file, for a Kafka topic.

A topic has no single end: each partition has its own. So `tail` reads the last n records
of every partition (assign, then seek to end - n; no consumer group joins or commits) and
keeps the newest n of them by timestamp. Values in Confluent's wire format (a zero byte and
a 4-byte schema id) are decoded through the schema registry; anything else shows its size.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pandas as pd
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from rtml.clients import QUIET
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.observe import no_broker
from rtml.schemas import SCHEMAS, avro_deserializer

BASE_COLUMNS = ["partition", "offset", "timestamp", "key"]
MAX_RECORDS = 1000
# A group id librdkafka requires; tail only assigns partitions, so it never joins or commits.
_GROUP = "rtml-tail"


class TailError(RtmlError):
    """The topic does not exist, the cluster does not answer, or n is out of range."""


def tail(settings: Settings, topic: str, n: int = 20, timeout: float = 10.0) -> pd.DataFrame:
    """The newest `n` records of `topic` across its partitions, oldest first.

    Columns: partition, offset, timestamp (UTC), key (text), then each field of the decoded
    value, or `value_bytes` for values that are not registered Avro. Reads for at most about
    `timeout` seconds; partitions whose leader is unreachable are skipped.
    """
    if not 1 <= n <= MAX_RECORDS:
        raise TailError(f"Tail reads 1 to {MAX_RECORDS} records, not {n}.")
    consumer = Consumer(
        settings.client_config(
            group_id=_GROUP,
            enable_auto_commit=False,
            enable_partition_eof=True,
            socket_timeout_ms=int(min(timeout, 10) * 1000),
            logger=QUIET,
        )
    )
    deadline = time.monotonic() + timeout
    try:
        ranges = last_ranges(settings, consumer, topic, n, timeout)
        messages = _read(consumer, topic, ranges, deadline)
    finally:
        consumer.close()
    messages.sort(key=lambda m: (m.timestamp()[1], m.partition(), m.offset()))
    return _frame(settings, topic, messages[-n:])


def last_ranges(
    settings: Settings,
    consumer: Consumer,
    topic: str,
    n: int,
    timeout: float,
    error: type[RtmlError] = TailError,
) -> dict[int, tuple[int, int]]:
    """Partition -> (first offset to read, end offset) for the last n records of each
    non-empty partition; `error` with one sentence when the cluster or the topic is missing."""
    try:
        metadata = consumer.list_topics(topic, timeout=min(timeout, 5)).topics[topic]
    except KafkaException as exc:
        raise error(no_broker(settings)) from exc
    if metadata.error is not None and metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        raise error(
            f"Topic {topic!r} does not exist on {settings.bootstrap}: create the catalogue's "
            "topics with `rtml topics apply`."
        )
    ranges = {}
    for partition in sorted(metadata.partitions):
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=min(timeout, 3), cached=False
            )
        except KafkaException:
            continue  # its leader is down or moving: show the partitions that answer
        if high > low:
            ranges[partition] = (max(low, high - n), high)
    return ranges


def _read(
    consumer: Consumer, topic: str, ranges: dict[int, tuple[int, int]], deadline: float
) -> list[Message]:
    """Every message in `ranges`, or those that arrived before the deadline."""
    if not ranges:
        return []
    consumer.assign([TopicPartition(topic, p, start) for p, (start, _end) in ranges.items()])
    pending = set(ranges)
    out = []
    while pending and time.monotonic() < deadline:
        for msg in consumer.consume(500, timeout=0.5):
            error = msg.error()
            if error is not None:
                # End of partition: compacted topics and transaction markers leave offset gaps,
                # so reaching the end is what says a partition is done, not its last offset.
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                continue
            end = ranges[msg.partition()][1]
            if msg.offset() < end:
                out.append(msg)
            if msg.offset() >= end - 1:
                pending.discard(msg.partition())
    return out


def _frame(settings: Settings, topic: str, messages: list[Message]) -> pd.DataFrame:
    """The messages as rows; Avro values decoded into one column per field."""
    decode = _Decoder(settings, topic)
    rows = []
    for msg in messages:
        key = msg.key()
        row: dict[str, Any] = {
            "partition": msg.partition(),
            "offset": msg.offset(),
            "timestamp": pd.Timestamp(msg.timestamp()[1], unit="ms", tz="UTC"),
            "key": None if key is None else key.decode(errors="replace"),
        }
        for name, value in decode(msg.value()).items():
            row.setdefault(name, value)
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame if rows else pd.DataFrame(columns=BASE_COLUMNS)


class _Decoder:
    """Avro values through the registry (into the topic's schema when it has one), else sizes.

    A registry that fails once is not asked again for this tail: each failure can take its
    whole HTTP timeout, and the sizes are still worth showing.
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.deserialize = avro_deserializer(settings, topic if topic in SCHEMAS else None)
        self.context = SerializationContext(topic, MessageField.VALUE)
        self.registry_ok = True

    def __call__(self, value: bytes | None) -> dict[str, Any]:
        if value is None:
            return {"value_bytes": None}  # a tombstone: the key was deleted
        if self.registry_ok and len(value) > 5 and value[0] == 0:
            try:
                decoded = self.deserialize(value, self.context)
            except SchemaRegistryError as exc:
                # 4xx: no such schema id, so not registered Avro; else the registry failed.
                self.registry_ok = 400 <= exc.http_status_code < 500
            except (httpx.HTTPError, OSError):
                self.registry_ok = False
            except SerializationError:
                pass  # not Avro after all: show its size
            else:
                if isinstance(decoded, dict):
                    return {k: _cell(v) for k, v in decoded.items()}
        return {"value_bytes": len(value)}


def _cell(value: Any) -> Any:
    """Scalars as they are; nested records, arrays, maps and bytes as text a table can show."""
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if isinstance(value, bytes):
        return value.hex()
    return value
