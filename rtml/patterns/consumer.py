"""Consumer patterns: groups and rebalances, when to commit, backpressure, replay by time.

The delivery guarantee of a consumer is decided by one thing: whether it commits an
offset before or after it has processed the record. `consume` does either, and can
"crash" (stop without closing or committing, as a killed process would) after a number of
records, so the difference shows up as lost or duplicated records on the restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_END, Consumer, KafkaError, Message, TopicPartition

from rtml.config import Settings

AT_MOST_ONCE = "at-most-once"
AT_LEAST_ONCE = "at-least-once"


@dataclass
class RebalanceLog:
    """Partition assignments and revocations as they happen (group membership, visible)."""

    events: list[tuple[float, str, list[int]]] = field(default_factory=list)

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.events.append((time.time(), "assigned", sorted(p.partition for p in partitions)))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
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
) -> int:
    """Consume `topic` in `group` until idle; return how many records were processed.

    It waits up to `first_timeout` for the first record (joining the group and getting
    partitions takes a rebalance), then stops after `idle_timeout` without a record.

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
        if not self.paused and buffered >= self.high:
            consumer.pause(consumer.assignment())
            self.paused = True
            self.pauses += 1
        elif self.paused and buffered <= self.low:
            consumer.resume(consumer.assignment())
            self.paused = False
