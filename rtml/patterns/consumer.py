"""Consumer patterns: groups and rebalances, when to commit, backpressure, replay by time.

The delivery guarantee of a consumer is decided by one thing: whether it commits an
offset before or after it has processed the record. `consume` does either, and can
"crash" (stop without closing or committing, as a killed process would) after a number of
records, so the difference shows up as lost or duplicated records on the restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_END,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    Message,
    TopicPartition,
)
from confluent_kafka.serialization import MessageField, SerializationContext

from rtml.config import Settings
from rtml.schemas import SCHEMAS, avro_deserializer
from rtml.topics import TopicError

AT_MOST_ONCE = "at-most-once"
AT_LEAST_ONCE = "at-least-once"


@dataclass
class RebalanceLog:
    """Partition assignments and revocations as they happen (group membership, visible)."""

    events: list[tuple[float, str, list[int]]] = field(default_factory=list)

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Record the partitions this member was given."""
        self.events.append((time.time(), "assigned", sorted(p.partition for p in partitions)))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Record the partitions this member lost."""
        self.events.append((time.time(), "revoked", sorted(p.partition for p in partitions)))

    @property
    def assigned(self) -> list[int]:
        """The partitions this member holds now (after the last event)."""
        held: set[int] = set()
        for _, kind, parts in self.events:
            held = held | set(parts) if kind == "assigned" else held - set(parts)
        return sorted(held)


def group_consumer(settings: Settings, group: str, **overrides: object) -> Consumer:
    """A consumer in `group` that commits only when told to (the patterns below decide when)."""
    conf = settings.client_config(
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # A member that dies is noticed after 6 s (the broker's minimum) instead of 45 s.
        session_timeout_ms=6000,
        **overrides,
    )
    return Consumer(conf)


def consume(
    settings: Settings,
    topic: str,
    group: str,
    process: Callable[[Message], None],
    guarantee: str = AT_LEAST_ONCE,
    crash_after: int | None = None,
    idle_timeout: float = 3.0,
    first_timeout: float = 60.0,
    rebalances: RebalanceLog | None = None,
    stop: Callable[[], bool] | None = None,
) -> int:
    """Consume `topic` in `group` until idle; return how many records were processed.

    It waits up to `first_timeout` for the first record (joining the group and getting
    partitions takes a rebalance), then stops after `idle_timeout` without a record, or as
    soon as `stop()` returns True (checked before each poll; it closes cleanly, as on a
    shutdown signal).

    at-least-once: process, then commit. A crash between the two re-delivers the record.
    at-most-once: commit, then process. A crash between the two loses the record.
    `crash_after=n` stops abruptly after the n-th record is fetched, with no close and no
    further commit, at the worst moment for the chosen guarantee.
    """
    if guarantee not in (AT_MOST_ONCE, AT_LEAST_ONCE):
        raise ValueError(f"guarantee must be {AT_MOST_ONCE!r} or {AT_LEAST_ONCE!r}")
    consumer = group_consumer(settings, group)
    log = rebalances or RebalanceLog()
    consumer.subscribe([topic], on_assign=log.on_assign, on_revoke=log.on_revoke)
    processed = fetched = 0
    last = time.monotonic()
    try:
        while time.monotonic() - last < (idle_timeout if fetched else first_timeout):
            if stop is not None and stop():
                break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"consumer error: {msg.error()}")
            last = time.monotonic()
            fetched += 1
            crash = crash_after is not None and fetched >= crash_after
            if guarantee == AT_MOST_ONCE:
                consumer.commit(message=msg, asynchronous=False)
                if crash:
                    return processed  # committed but never processed: lost
                process(msg)
            else:
                process(msg)
                if crash:
                    return processed + 1  # processed but never committed: re-delivered
                consumer.commit(message=msg, asynchronous=False)
            processed += 1
    finally:
        # A crashed consumer does not leave the group politely; closing would. Either way
        # the group notices (session timeout or leave) and hands the partitions on.
        if crash_after is None or fetched < crash_after:
            consumer.close()
    return processed


def read_and_commit(consumer: Consumer, n: int, timeout: float = 60.0) -> int:
    """Read `n` records (or as many as arrive within `timeout` s), then commit; return the count.

    The consumer stays in its group afterwards, holding its partitions: a consumer that
    worked for a while and then stopped polling, as a stuck processing loop does.
    """
    got = 0
    deadline = time.monotonic() + timeout
    while got < n and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise RuntimeError(f"consumer error: {msg.error()}")
        got += 1
    if got:
        consumer.commit(asynchronous=False)
    return got


@dataclass(frozen=True)
class Record:
    """One record as read back: where it sits, its timestamp, its key and its value."""

    partition: int
    offset: int
    timestamp_ms: int
    timestamp_type: str  # "create time" (the producer's) or "log append time" (the broker's)
    key: bytes | None
    value: Any  # a dict for a topic with an Avro schema, else the raw bytes


def end_offsets(settings: Settings, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """Partition -> log end offset of `topic`: where the next record of each partition goes.

    Taken before producing, it marks where the new records will start.
    """
    consumer = Consumer(settings.client_config(group_id="rtml-offsets", enable_auto_commit=False))
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if metadata.error is not None and metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise TopicError(f"Topic {topic!r} does not exist on {settings.bootstrap}.")
        partitions = metadata.partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
            for p in sorted(partitions)
        }
    finally:
        consumer.close()


def read_from(
    settings: Settings,
    topic: str,
    start: Mapping[int, int],
    per_partition: int = 3,
    timeout: float = 30.0,
) -> list[Record]:
    """The first `per_partition` records of each partition at or after the offsets in `start`.

    Records written before `start` are skipped, so `read_from(s, t, end_offsets(s, t))` taken
    before a producer ran shows exactly what it wrote. Values of a topic with an Avro schema
    are decoded through the registry. No group joins or commits: the consumer only assigns.
    Returns the records sorted by timestamp, then partition and offset.
    """
    ends = end_offsets(settings, topic, timeout=min(timeout, 10.0))
    wanted = {
        p: min(ends[p], start.get(p, 0) + per_partition) for p in ends if ends[p] > start.get(p, 0)
    }
    decode = _value_decoder(settings, topic)
    consumer = Consumer(settings.client_config(group_id="rtml-read", enable_auto_commit=False))
    out: list[Record] = []
    try:
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in wanted])
        deadline = time.monotonic() + timeout
        while wanted and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            part = msg.partition()
            if part not in wanted or msg.offset() >= wanted[part]:
                continue
            kind, stamp = msg.timestamp()
            out.append(
                Record(
                    part,
                    msg.offset(),
                    stamp,
                    "log append time" if kind == TIMESTAMP_LOG_APPEND_TIME else "create time",
                    msg.key(),
                    decode(msg.value()),
                )
            )
            if msg.offset() + 1 >= wanted[part]:
                del wanted[part]
    finally:
        consumer.close()
    return sorted(out, key=lambda r: (r.timestamp_ms, r.partition, r.offset))


def _value_decoder(settings: Settings, topic: str) -> Callable[[bytes | None], Any]:
    """Avro values through the registry for topics with a schema; raw bytes otherwise."""
    if topic not in SCHEMAS:
        return lambda value: value
    deserialize = avro_deserializer(settings, topic)
    ctx = SerializationContext(topic, MessageField.VALUE)
    return lambda value: None if value is None else deserialize(value, ctx)


def seek_to_time(consumer: Consumer, topic: str, timestamp_ms: int, timeout: float = 10) -> None:
    """Assign every partition of `topic` at the first offset whose timestamp >= `timestamp_ms`.

    This is replay by time: Kafka's time index maps a timestamp to an offset per partition.
    Partitions with nothing that late start at their end.
    """
    meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
    wanted = [TopicPartition(topic, p, timestamp_ms) for p in meta.partitions]
    found = consumer.offsets_for_times(wanted, timeout=timeout)
    consumer.assign(
        [
            TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
            for tp in found
        ]
    )


@dataclass
class Backpressure:
    """Pause fetching while more than `high` records wait, resume below `low`.

    A consumer that buffers whatever it fetches grows without bound when processing is
    slower than arrival; pausing its partitions leaves the backlog in Kafka (as lag) instead
    of in memory, and resuming drains it.
    """

    high: int
    low: int
    paused: bool = False
    pauses: int = 0

    def update(self, consumer: Consumer, buffered: int) -> None:
        """Pause the assignment at `high` buffered records, resume it at `low`."""
        if not self.paused and buffered >= self.high:
            consumer.pause(consumer.assignment())
            self.paused = True
            self.pauses += 1
        elif self.paused and buffered <= self.low:
            consumer.resume(consumer.assignment())
            self.paused = False
