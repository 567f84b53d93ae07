"""Live windows of every kind Quix Streams has, on the same transaction stream.

The model's features need exact 1/7/30-day windows per transaction (see `app.py`); these
short windows are here to show what each window type does with the same events, and they
feed the control room's Windows page. Per customer (the stream's key):

| kind      | window                               | aggregations                          |
|-----------|--------------------------------------|---------------------------------------|
| tumbling  | 1 h, back to back                    | count, sum, mean, min, max            |
| hopping   | 1 h, a new one every 15 min          | count, sum                            |
| sliding   | the hour before each transaction     | count, max                            |
| session   | until 30 min without a transaction   | count, sum, collect (terminal ids)    |
| count     | every 5 transactions                 | mean, min, max                        |
| terminals | per terminal, 1 h tumbling           | count, distinct customers (custom)    |

The last one runs on the stream re-keyed by terminal, so it is a window over a repartition.
Results are emitted when a window closes (`final()`), written as JSON to the `windows`
topic with the customer (or terminal) id as key. Event time drives every window: a record
older than a closed window plus its grace is late; Quix skips it for that window, and the
app counts it (the transaction itself still gets its features).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.dataframe.windows import Collect, Count, Max, Mean, Min, Sum
from quixstreams.dataframe.windows.aggregations import Aggregator

from rtml.config import Settings
from rtml.impl import exercise
from rtml.partitioner import partition_for

log = logging.getLogger(__name__)

TOPIC = "windows"
HOUR = timedelta(hours=1)
GRACE = timedelta(minutes=1)
CUSTOMER_KINDS = ("tumbling", "hopping", "sliding", "session", "count")
TERMINAL_KINDS = ("terminals",)


class DistinctValues(Aggregator):
    """A custom aggregator: how many different values of `column` a window saw.

    The state is the sorted list of values seen (JSON-serialisable, so RocksDB and the
    changelog can hold it); `merge` unions two states, which session windows need when a
    late event bridges two sessions. The four steps are the week 2 exercise
    `distinct_values` (labs/week2/aggregators.py), called through `rtml.impl.exercise`, so
    a learner's version runs live.
    """

    def __init__(self, column: str | None = None) -> None:
        super().__init__(column)
        self._initialize = exercise("distinct_initialize")
        self._agg = exercise("distinct_agg")
        self._merge = exercise("distinct_merge")
        self._result = exercise("distinct_result")

    def initialize(self) -> list:
        """The empty aggregate (the exercise `distinct_initialize`)."""
        return self._initialize()

    def agg(self, old: list, new: Any, timestamp: int) -> list:
        """Add one record's value (the exercise `distinct_agg`)."""
        return self._agg(old, new.get(self.column) if self.column else new)

    def result(self, value: list) -> int:
        """The window's result: the number of distinct values (`distinct_result`)."""
        return self._result(value)

    def merge(self, a: list, b: list) -> list:
        """Merge two partial aggregates (the exercise `distinct_merge`)."""
        return self._merge(a, b)


class WindowStats:
    """Records a window skipped because they came after it closed (+ grace)."""

    def __init__(self) -> None:
        self.late = 0

    def on_late(self, value: Any, key: Any, timestamp_ms: int, late_by_ms: int, *args: Any) -> bool:
        """Quix's late-record callback: count the record, skip Quix's own log line."""
        self.late += 1
        return False  # counted here; Quix need not log each one


def add_live_windows(
    app: Application,
    by_customer: StreamingDataFrame,
    by_terminal: StreamingDataFrame,
    stats: WindowStats,
) -> None:
    """Branch every window kind off the customer stream (and one off the terminal one)."""
    out = app.topic(TOPIC, value_serializer="json", key_serializer="bytes")
    late = stats.on_late
    windows = {
        "tumbling": by_customer.tumbling_window(
            HOUR, grace_ms=GRACE, name="w-tumbling", on_late=late
        )
        .agg(
            count=Count(),
            sum=Sum("tx_amount"),
            mean=Mean("tx_amount"),
            min=Min("tx_amount"),
            max=Max("tx_amount"),
        )
        .final(),
        "hopping": by_customer.hopping_window(
            HOUR, timedelta(minutes=15), grace_ms=GRACE, name="w-hopping", on_late=late
        )
        .agg(count=Count(), sum=Sum("tx_amount"))
        .final(),
        "sliding": by_customer.sliding_window(HOUR, grace_ms=GRACE, name="w-sliding", on_late=late)
        .agg(count=Count(), max=Max("tx_amount"))
        .final(),
        "session": by_customer.session_window(
            timedelta(minutes=30), grace_ms=GRACE, name="w-session", on_late=late
        )
        .agg(count=Count(), sum=Sum("tx_amount"), terminals=Collect("terminal_id"))
        .final(),
        "count": by_customer.tumbling_count_window(5, name="w-count")
        .agg(mean=Mean("tx_amount"), min=Min("tx_amount"), max=Max("tx_amount"))
        .final(),
        "terminals": by_terminal.tumbling_window(
            HOUR, grace_ms=GRACE, name="w-terminals", on_late=late
        )
        .agg(count=Count(), customers=DistinctValues("customer_id"))
        .final(),
    }
    for kind, sdf in windows.items():
        sdf.apply(lambda w, kind=kind: {"kind": kind, **w}).to_topic(out)


def read_windows(
    settings: Settings, key: int, kinds: tuple[str, ...] = CUSTOMER_KINDS, scan: int = 20_000
) -> list[dict[str, Any]]:
    """The latest closed windows of customer `key` (with TERMINAL_KINDS: terminal `key`),
    oldest first.

    Reads the tail (`scan` records) of the one partition that holds `key`: the windows topic
    is keyed like its input, so a key's results all sit in one partition.
    """
    conf = {
        "bootstrap.servers": settings.bootstrap,
        "group.id": "rtml-windows-reader",
        "enable.auto.commit": False,
        **settings.security,
    }
    consumer = Consumer(conf, logger=logging.getLogger("rtml.features.windows.client"))
    wanted = str(key).encode()
    found: list[dict[str, Any]] = []
    try:
        partitions = len(consumer.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions)
        tp = TopicPartition(TOPIC, partition_for(wanted, partitions))
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        if high <= low:
            return []
        consumer.assign([TopicPartition(TOPIC, tp.partition, max(low, high - scan))])
        position = max(low, high - scan)
        while position < high:
            # No more than are left: consume() waits out its timeout for a batch to fill.
            batch = consumer.consume(min(1000, high - position), timeout=5)
            if not batch:
                break
            for msg in batch:
                position = msg.offset() + 1
                if msg.error() is None and msg.key() == wanted:
                    record = json.loads(msg.value())
                    if record.get("kind") in kinds:
                        found.append(record)
    finally:
        consumer.close()
    return found
