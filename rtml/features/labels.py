"""The labels as a global table: every terminal's fraud labels, in every feature-app process.

Terminal risk at event time t counts the labels known at t. Labels are keyed by transaction
and spread over 6 partitions; transactions reach the terminal stage through a repartition
topic fed from 6 other partitions, each at its own pace. If labels went through a keyed,
partitioned join, whether a label with label time just before t was read before the
transaction at t would depend on which partition happened to be fetched first: the feature
would differ from run to run. A *global table* (Kafka Streams' GlobalKTable) avoids that:
each process reads all label partitions itself and, before it computes the features of a
transaction at t, reads labels until every label partition is past t (or at its end). The
result is the same on every run and equals the batch definition.

The table is rebuilt from the labels topic when a process starts, so it needs no changelog:
the topic is the changelog. The costs are one consumer per process, memory (about a month
of labels once every input partition has been seen) and start-up time, as a restart reads
the whole labels topic again.
"""

from __future__ import annotations

import logging
import time
import uuid
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from rtml.config import Settings
from rtml.features.definitions import MS_PER_DAY, terminal_window
from rtml.features.errors import FeatureError
from rtml.schemas import SchemaError
from rtml.schemas.wire import WireDeserializer

log = logging.getLogger(__name__)
_BATCH = 2000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


@dataclass
class _Terminal:
    """One terminal's known labels, sorted by the labelled transaction's time."""

    times: list[int] = field(default_factory=list)
    frauds: list[int] = field(default_factory=list)


class LabelTable:
    """Fraud labels per terminal, read from the `labels` topic up to the time asked for."""

    def __init__(self, settings: Settings, topic: str = "labels", wait_s: float = 5.0) -> None:
        self.settings = settings
        self.topic = topic
        self.wait_s = wait_s
        self.decode = WireDeserializer.for_topic(settings, "labels")
        self.terminals: dict[int, _Terminal] = defaultdict(_Terminal)
        self.labels_read = 0
        self.bad_labels = 0
        self.stale_reads = 0  # catch-ups that gave up waiting (the feature may miss labels)
        self._consumer: Consumer | None = None
        self._partitions: list[TopicPartition] = []
        self._last_label_time: dict[int, int] = {}
        self._positions: dict[int, int] = {}
        self._horizon = 0

    def start(self) -> None:
        """Assign every label partition from its beginning.

        The table is rebuilt from the topic on every start. Starting later (by timestamp)
        would need the oldest transaction the app may still process, and records pending
        in the repartition topic are not in time order, so no offset says which that is.
        Reading the whole topic is exact; `forget_before` then keeps memory to a month.
        """
        conf = {
            "bootstrap.servers": self.settings.bootstrap,
            # Assigned, never subscribed, never committed: the group id only names the client.
            "group.id": f"rtml-features-labels-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            # Fetches return at once when caught up, so the high watermark stays fresh.
            "fetch.wait.max.ms": 20,
            **self.settings.security,
        }
        consumer = Consumer(conf, logger=logging.getLogger("rtml.features.labels.client"))
        try:
            meta = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
            if meta.error is not None:
                raise FeatureError(
                    f"The feature app reads labels from topic {self.topic}, which the cluster "
                    f"does not have ({meta.error.str()}): run `rtml topics apply`."
                )
        except KafkaException as exc:
            consumer.close()
            raise FeatureError(
                f"The feature app cannot read topic {self.topic} at {self.settings.bootstrap} "
                f"({exc}): is the cluster up (`rtml cluster status`)?"
            ) from exc
        self._partitions = [
            TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)
        ]
        consumer.assign(self._partitions)
        self._consumer = consumer
        self._last_label_time = {tp.partition: -1 for tp in self._partitions}
        # Where each partition's reading starts: the consumer reports no position until it
        # has returned a record, and an empty partition never returns one.
        self._positions = {
            tp.partition: consumer.get_watermark_offsets(
                TopicPartition(self.topic, tp.partition), timeout=10
            )[0]
            for tp in self._partitions
        }

    def close(self) -> None:
        """Close the labels consumer."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def catch_up(self, now_ms: int) -> bool:
        """Read labels until each partition is past `now_ms` or at its end; False on timeout.

        A label sits in its partition in label-time order, so once a partition shows a label
        later than `now_ms`, every label of that partition known at `now_ms` has been read.
        """
        if self._consumer is None:
            self.start()
        deadline = time.monotonic() + self.wait_s
        while not self._caught_up(now_ms):
            if time.monotonic() > deadline:
                self.stale_reads += 1
                log.warning(
                    "Labels were not read up to %d within %.1f s; terminal risk may miss some.",
                    now_ms,
                    self.wait_s,
                )
                return False
            self._read(timeout=0.05)
        return True

    def window(self, terminal_id: int, now_ms: int, days: int) -> tuple[int, float]:
        """(count, risk) of `terminal_id`'s labelled transactions in the window ending a
        week before `now_ms` (see `definitions.terminal_window`)."""
        known = self.terminals.get(terminal_id)
        if known is None:
            return 0, 0.0
        return terminal_window(known.times, known.frauds, now_ms, days)

    def forget_before(self, horizon_ms: int) -> None:
        """Drop labels of transactions older than `horizon_ms` (no window needs them)."""
        if horizon_ms <= self._horizon + MS_PER_DAY:
            return  # prune at most once per day of event time: it walks every terminal
        self._horizon = horizon_ms
        for terminal in self.terminals.values():
            cut = bisect_right(terminal.times, horizon_ms)
            if cut:
                del terminal.times[:cut]
                del terminal.frauds[:cut]

    def _caught_up(self, now_ms: int) -> bool:
        consumer = self._consumer
        assert consumer is not None
        for tp in self._partitions:
            if self._last_label_time[tp.partition] > now_ms:
                continue
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            # The consumer's position also counts offsets that hold no record (transaction
            # markers); before the first record it has none, and the start holds.
            position = consumer.position([TopicPartition(tp.topic, tp.partition)])[0].offset
            if high < 0 or max(position, self._positions[tp.partition]) < high:
                return False
        return True

    def _read(self, timeout: float) -> None:
        """Read what has arrived, waiting up to `timeout` s for the first label only.

        (`consume(n, timeout)` would wait out the whole timeout unless n labels came, and
        this runs in the path of every transaction.)
        """
        consumer = self._consumer
        assert consumer is not None
        first = consumer.poll(timeout)
        if first is None:
            return
        for msg in [first, *consumer.consume(_BATCH, timeout=0)]:
            if msg.error() is not None:
                log.warning("Label consumer: %s", msg.error())
                continue
            try:
                label = self.decode(msg.value())
            except SchemaError as exc:
                # Not a label this table can use; the labels producer is not a stage with a
                # DLQ of its own, so count it and say so once per record.
                self.bad_labels += 1
                log.warning(
                    "Skipped label at %s[%d]@%d: %s",
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    exc,
                )
                continue
            known = self.terminals[label["terminal_id"]]
            tx_ms = to_millis(label["tx_datetime"])
            at = bisect_right(known.times, tx_ms)
            known.times.insert(at, tx_ms)
            known.frauds.insert(at, int(label["tx_fraud"]))
            self._last_label_time[msg.partition()] = msg.timestamp()[1]
            self._positions[msg.partition()] = msg.offset() + 1
            self.labels_read += 1


def to_millis(value: datetime | int) -> int:
    """fastavro reads timestamp-millis as an aware datetime; features work in exact ms."""
    if isinstance(value, datetime):
        return (value - _EPOCH) // _ONE_MS
    return int(value)
