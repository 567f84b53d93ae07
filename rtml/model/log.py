"""Read a topic from offset 0 or from a timestamp up to where it ended when the read began.

Training reads history the way a rebuild would: assigned partitions (no consumer group, no
commits), each read from its start offset to the end offset it had when the call began.
Records appended meanwhile are not read, so one call sees one fixed slice of the log and
two calls on an unchanged topic see the same records.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from rtml.clients import QUIET, partitions_of
from rtml.config import Settings
from rtml.model.update import ModelError

_BATCH = 5000


@dataclass(frozen=True)
class Record:
    """One record's partition, offset, timestamp (ms) and value bytes."""

    partition: int
    offset: int
    timestamp: int
    value: bytes | None


@dataclass(frozen=True)
class Slice:
    """Which offsets of each partition a read covers: [start, end)."""

    topic: str
    start: dict[int, int]
    end: dict[int, int]

    @property
    def records(self) -> int:
        """Offsets in the slice (transaction markers included, so an upper bound)."""
        return sum(max(0, self.end[p] - self.start[p]) for p in self.end)


def plan(consumer: Consumer, settings: Settings, topic: str, since_ms: int | None) -> Slice:
    """The slice of `topic` to read: from offset 0 (or the first record at or after
    `since_ms`) to each partition's end offset now."""
    start, end = {}, {}
    for p in partitions_of(consumer, settings, topic, ModelError):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        start[p], end[p] = low, high
    if since_ms is not None and end:
        wanted = [TopicPartition(topic, p, since_ms) for p in end]
        for tp in consumer.offsets_for_times(wanted, timeout=10):
            # -1: no record at or after since_ms in this partition, so nothing to read there.
            start[tp.partition] = end[tp.partition] if tp.offset < 0 else tp.offset
    return Slice(topic, start, end)


def read(
    settings: Settings, topic: str, since_ms: int | None = None, timeout: float = 300.0
) -> tuple[Slice, list[Record]]:
    """The committed records of `topic` in its slice (see `plan`), in partition order.

    Timestamps are not always in offset order (a record may be written after a later one),
    so a caller that wants exactly the records at or after `since_ms` filters by timestamp:
    the start offset only skips what is certainly older.
    """
    consumer = Consumer(
        {
            **settings.client_config(
                group_id=f"rtml-model-read-{uuid.uuid4().hex[:8]}",
                enable_auto_commit=False,
                enable_partition_eof=False,
                isolation_level="read_committed",
            ),
            "logger": QUIET,
        }
    )
    try:
        span = plan(consumer, settings, topic, since_ms)
        return span, list(_consume(consumer, span, timeout))
    except KafkaException as exc:
        raise ModelError(f"Reading topic {topic} failed ({exc}): is the cluster up?") from exc
    finally:
        consumer.close()


def _consume(consumer: Consumer, span: Slice, timeout: float) -> Iterator[Record]:
    left = {p: e for p, e in span.end.items() if e > span.start[p]}
    if not left:
        return
    consumer.assign(
        [
            TopicPartition(span.topic, p, span.start[p] if span.start[p] > 0 else OFFSET_BEGINNING)
            for p in left
        ]
    )
    deadline = time.monotonic() + timeout
    while left:
        if time.monotonic() > deadline:
            raise ModelError(
                f"Could not read topic {span.topic} to its end offsets within {timeout:g} s."
            )
        for msg in consumer.consume(_BATCH, timeout=0.5):
            if msg.error() is not None:
                continue
            p, offset = msg.partition(), msg.offset()
            if p not in left or offset >= left[p]:
                continue  # appended after the read began
            yield Record(p, offset, msg.timestamp()[1], msg.value())
            if offset + 1 >= left[p]:
                del left[p]
        # Under exactly-once the last offsets may be transaction markers, never delivered.
        for p in list(left):
            position = consumer.position([TopicPartition(span.topic, p)])[0].offset
            if position >= left[p]:
                del left[p]
