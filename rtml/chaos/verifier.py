"""The lost/duplicate verifier: what the producer was told against what a reader finds.

Counting is by unique record id. The producer's side is a `Ledger`: each id acknowledged
(with its key, in acknowledgement order) or failed (an error came back: not acknowledged,
so never a loss). The reader's side is a `Reader`: no consumer group, every partition from
offset 0, `read_committed`, counting how often each id appears and in which order per key.
`verify` compares the two; it is pure, so the counting is tested without a broker.

A pipeline scenario (kill the prediction service) reads another topic than it writes:
what was acknowledged is its input, what is read its output (a prediction per input id),
so order per key is not compared, a duplicate may be allowed (at-least-once reprocessing)
and each copy's value is compared instead: a duplicate must say the same thing.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from confluent_kafka import Consumer, Message, TopicPartition

from rtml.clients import QUIET
from rtml.config import Settings
from rtml.poll import until

Key = bytes | None
Decode = Callable[[Message], int]  # the record id of a message
Payload = Callable[[Message], object]  # what copies of one id must agree on (a score)


class Read(NamedTuple):
    """One record as the reader got it: its key and id, where it sits in the log, and (for
    a reader given a payload) its Kafka timestamp in ms and the payload."""

    key: Key
    id: int
    partition: int
    offset: int
    timestamp: int = 0
    value: object = None


@dataclass(frozen=True)
class Verdict:
    """The counts of a run; `ok` when nothing acknowledged was lost, repeated or reordered."""

    acknowledged: int
    read: int
    lost: int
    duplicated: int  # acknowledged ids stored more than once in the log
    failed: int
    out_of_order: int  # keys whose ids were read in another order than acknowledged
    duplicated_failed: int = 0  # ids the producer was told failed, yet stored more than once
    reread: int = 0  # log positions the reader was handed more than once (its side, not the log's)
    lost_ids: tuple[int, ...] = ()  # the first few, to look them up
    duplicated_ids: tuple[int, ...] = ()
    duplicates_allowed: bool = False  # at-least-once reprocessing: counted, not a failure
    differing: int = 0  # ids stored more than once whose copies differ (by payload)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and (self.duplicates_allowed or self.duplicated == 0)
            and self.out_of_order == 0
            and self.differing == 0
        )

    def rows(self) -> list[tuple[str, int]]:
        """(what, count) in the order a verdict table shows them."""
        twice = "duplicated (allowed, counted)" if self.duplicates_allowed else "duplicated"
        return [
            ("acknowledged", self.acknowledged),
            ("read", self.read),
            ("lost", self.lost),
            (twice, self.duplicated),
            *([("duplicates that differ", self.differing)] if self.duplicates_allowed else []),
            ("failed (not acknowledged)", self.failed),
            ("failed, stored twice", self.duplicated_failed),
            ("keys out of order", self.out_of_order),
            ("re-delivered to the reader", self.reread),
        ]


def verify(
    acked: Sequence[tuple[Key, int]],
    failed: Iterable[int],
    reads: Sequence[Read],
    sample: int = 10,
    *,
    ordered: bool = True,
    duplicates_allowed: bool = False,
) -> Verdict:
    """Compare acknowledgements (key, id in ack order) with reads (in read order).

    Lost: acknowledged, never read. Duplicated: stored at more than one log position. A
    failed record may have been stored anyway (the error came after the write), so it may
    be read once; stored twice, it is counted apart. A position handed to the reader twice
    is the reader's re-delivery, not a duplicate in the log. Out of order: a key whose
    acknowledged ids, as first read, are not in acknowledgement order (only if `ordered`:
    a pipeline's output is keyed otherwise than its input). Differing: an id stored more
    than once whose copies carry different values (reads without values never differ).
    """
    positions: dict[int, set[tuple[int, int]]] = defaultdict(set)
    deliveries = Counter((r.partition, r.offset) for r in reads)
    for r in reads:
        positions[r.id].add((r.partition, r.offset))
    acked_ids = {i for _, i in acked}
    failed_ids = set(failed) - acked_ids
    lost = sorted(acked_ids - positions.keys())
    stored_twice = {i for i, where in positions.items() if len(where) > 1}
    duplicated = sorted(stored_twice - failed_ids)
    expected: dict[Key, list[int]] = defaultdict(list)
    for key, i in acked:
        if i in positions:
            expected[key].append(i)
    first_read: dict[Key, list[int]] = defaultdict(list)
    once: set[int] = set()
    for r in reads:
        if r.id in acked_ids and r.id not in once:
            once.add(r.id)
            first_read[r.key].append(r.id)
    out_of_order = (
        sum(first_read.get(key, []) != ids for key, ids in expected.items()) if ordered else 0
    )
    values: dict[int, set[object]] = defaultdict(set)
    for r in reads:
        if r.id in stored_twice:
            values[r.id].add(r.value)
    return Verdict(
        acknowledged=len(acked_ids),
        read=len(positions),
        lost=len(lost),
        duplicated=len(duplicated),
        failed=len(failed_ids),
        out_of_order=out_of_order,
        duplicated_failed=len(stored_twice & failed_ids),
        reread=sum(n > 1 for n in deliveries.values()),
        lost_ids=tuple(lost[:sample]),
        duplicated_ids=tuple(duplicated[:sample]),
        duplicates_allowed=duplicates_allowed,
        differing=sum(len(v) > 1 for v in values.values()),
    )


class Ledger:
    """What the producer was told, filled from its delivery callbacks (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acked: list[tuple[Key, int]] = []
        self.ack_times: list[float] = []  # monotonic, parallel to `acked`
        self.failed: list[tuple[int, str]] = []

    def ack(self, key: Key, record_id: int, when: float | None = None) -> None:
        with self._lock:
            self.acked.append((key, record_id))
            self.ack_times.append(time.monotonic() if when is None else when)

    def fail(self, record_id: int, error: str) -> None:
        with self._lock:
            self.failed.append((record_id, error))

    @property
    def counts(self) -> tuple[int, int]:
        """(acknowledged, failed) so far."""
        with self._lock:
            return len(self.acked), len(self.failed)

    def ack_times_by_id(self) -> list[tuple[int, float]]:
        """(id, monotonic time of its acknowledgement), in acknowledgement order."""
        with self._lock:
            return [(i, t) for (_, i), t in zip(self.acked, self.ack_times, strict=True)]

    def acked_ids(self) -> set[int]:
        with self._lock:
            return {i for _, i in self.acked}

    def snapshot(self) -> tuple[list[tuple[Key, int]], list[int]]:
        """Copies of the acknowledged (key, id) pairs and the failed ids."""
        with self._lock:
            return list(self.acked), [i for i, _ in self.failed]


class Reader(threading.Thread):
    """Reads every partition of `topic` from offset 0 (no group, no commits, read_committed)
    and records each id it sees, in order, with its key."""

    def __init__(
        self, settings: Settings, topic: str, decode: Decode, payload: Payload | None = None
    ) -> None:
        super().__init__(daemon=True, name="chaos-reader")
        self.decode = decode
        self.payload = payload
        conf = settings.client_config(
            # librdkafka wants a group id; this one never joins, it only assigns.
            group_id=f"rtml-chaos-reader-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        conf["logger"] = QUIET  # a broker killed on purpose is not news on the terminal
        self.consumer = Consumer(conf)
        # Just after its creation a topic may show no partitions yet: wait, or the reader
        # would be assigned nothing and count every record as lost.
        parts = until(
            lambda: self.consumer.list_topics(topic, timeout=10).topics[topic].partitions,
            60,
            f"the partitions of {topic} to be known",
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in sorted(parts)])
        self._lock = threading.Lock()
        self._reads: list[Read] = []
        self._seen: set[int] = set()
        self._halt = threading.Event()
        self.error: Exception | None = None  # what stopped it early (a record it cannot decode)

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for msg in self.consumer.consume(1000, timeout=0.2):
                    if msg.error():
                        continue  # partition EOF or a transient error; the reader keeps going
                    record_id = self.decode(msg)
                    read = Read(msg.key(), record_id, msg.partition(), msg.offset())
                    if self.payload is not None:
                        read = read._replace(timestamp=msg.timestamp()[1], value=self.payload(msg))
                    with self._lock:
                        self._reads.append(read)
                        self._seen.add(record_id)
        except Exception as exc:  # reported by the scenario instead of dying unseen
            self.error = exc
        finally:
            self.consumer.close()

    def first_after(self, ms: int) -> int | None:
        """The earliest Kafka timestamp (ms) at or after `ms` among the reads (None: none)."""
        with self._lock:
            later = [r.timestamp for r in self._reads if r.timestamp >= ms]
        return min(later) if later else None

    def has_read(self, wanted: set[int]) -> bool:
        with self._lock:
            return wanted <= self._seen

    @property
    def reads(self) -> list[Read]:
        with self._lock:
            return list(self._reads)

    def wait_for(self, wanted: Callable[[], set[int]], timeout: float) -> bool:
        """Read until every id in `wanted()` was seen or `timeout` passes; then stop.

        Returns whether all were seen. Lost records never arrive, so this must end on a
        deadline, not on a condition alone.
        """
        deadline = time.monotonic() + timeout
        done = False
        while not done and self.error is None and time.monotonic() < deadline:
            done = self.has_read(wanted())
            if not done:
                time.sleep(0.2)
        self.stop()
        return done

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def verdict_of(
    ledger: Ledger, reader: Reader, *, ordered: bool = True, duplicates_allowed: bool = False
) -> Verdict:
    """The verdict of a finished run."""
    acked, failed = ledger.snapshot()
    return verify(
        acked, failed, reader.reads, ordered=ordered, duplicates_allowed=duplicates_allowed
    )
