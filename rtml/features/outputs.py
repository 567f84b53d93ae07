"""Read back what the feature app wrote, and compare its features with the batch reference.

A run's outputs are topics: `features` (Avro), `transactions.late` and `features.dlq`
(original bytes plus origin headers), `windows` (JSON), and Quix's changelog topics, which
hold every update of the app's state. These readers assign partitions and read them to
their end (no consumer group, no commits), so they can run beside the app.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, Message, TopicPartition

from rtml.config import Settings
from rtml.features.errors import FeatureError
from rtml.features.labels import to_millis
from rtml.schemas.wire import WireDeserializer


def read_records(
    settings: Settings,
    topic: str,
    partitions: Iterable[int] | None = None,
    timeout: float = 120.0,
) -> list[Message]:
    """Every committed record of `topic` (or of its `partitions`), read to the end."""
    consumer = Consumer(
        settings.client_config(
            group_id=f"rtml-read-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise FeatureError(f"Topic {topic} does not exist on {settings.bootstrap}.")
        wanted = sorted(meta.partitions) if partitions is None else list(partitions)
        left = {}
        for p in wanted:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                left[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in left])
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise FeatureError(f"Could not read {topic} to its end within {timeout:g} s.")
            for msg in consumer.consume(2000, timeout=1):
                if msg.error() is not None:
                    continue
                out.append(msg)
                if msg.offset() + 1 >= left.get(msg.partition(), math.inf):
                    del left[msg.partition()]
            # Under exactly-once the last offsets are transaction markers, never delivered.
            for p in list(left):
                position = consumer.position([TopicPartition(topic, p)])[0].offset
                if position >= left[p]:
                    del left[p]
        return out
    finally:
        consumer.close()


def read_features(settings: Settings, topic: str = "features") -> pd.DataFrame:
    """The features topic as a frame, one row per record, `tx_datetime` in ms."""
    decode = WireDeserializer.for_topic(settings, topic)
    rows = []
    for msg in read_records(settings, topic):
        value = decode(msg.value())
        value["tx_datetime"] = to_millis(value["tx_datetime"])
        rows.append(value)
    return pd.DataFrame(rows)


def differences(stream: pd.DataFrame, batch: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """The largest absolute difference per column between the stream's features (a
    `transaction_id` column) and the batch ones (indexed by transaction id), over the
    transactions both have. Missing on one side only counts as infinitely different."""
    stream = stream.drop_duplicates("transaction_id").set_index("transaction_id")
    common = stream.index.intersection(batch.index)
    if common.empty:
        raise FeatureError("The stream and the batch features share no transaction id.")
    out = {}
    for column in columns:
        left = stream.loc[common, column].to_numpy(dtype=float)
        right = batch.loc[common, column].to_numpy(dtype=float)
        both_missing = np.isnan(left) & np.isnan(right)
        gap = np.abs(left - right)
        gap[both_missing] = 0.0
        gap[np.isnan(gap)] = np.inf
        out[column] = float(gap.max())
    return pd.Series(out, name="max |stream - batch|")
