"""Feature freshness and event-to-prediction latency, per record, in HDR histograms.

Every prediction record carries the timestamps of the stages it went through (see
prediction.avsc), and Kafka stamps the record itself when the service produces it:

- `appended_time`: when the transaction was appended to Kafka (its record timestamp);
- `feature_time`: when the feature app had its features ready;
- the prediction record's own timestamp: when its prediction was produced (CreateTime).

From those, three measures per record, in microseconds:

- **freshness** = feature_time - appended_time: how old a transaction is when its features
  are ready;
- **event_to_prediction** = prediction record timestamp - appended_time: the "within 100 ms"
  of the design, measured on the consumer side as it should be;
- **scoring** = prediction record timestamp - feature_time: what the prediction service adds.

Each measure goes into an HdrHistogram (1 µs to 60 s, 3 significant digits: any value is
within 0.1% of the one recorded, in constant memory however many records). Values below 0
(clocks of two machines disagree) are recorded as 0 and values above 60 s (a replay, whose
appended_time is the event time of the past) as 60 s; both are counted, so a summary says
how many records it clamped. Kafka timestamps are milliseconds, so today every value is a
whole number of ms; the µs range is there for stages that stamp finer headers.

Histograms are windowed (one per second of prediction time, merged on demand, so the
control room shows "the last 10 s") and mergeable (the benchmark runs several instances and
adds their histograms). A snapshot encodes them with HdrHistogram's compressed base64 form,
so a process can write a JSON file that another reads.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition
from hdrh.histogram import HdrHistogram

from rtml.clients import QUIET, partitions_of
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.impl import exercise
from rtml.observe import no_broker
from rtml.schemas import SchemaError, projection, registry_client
from rtml.schemas.wire import WireDeserializer

MEASURES = {
    "freshness": "feature_time - appended_time",
    "event_to_prediction": "prediction record timestamp - appended_time",
    "scoring": "prediction record timestamp - feature_time",
}
LOWEST_US = 1
HIGHEST_US = 60_000_000
DIGITS = 3
PERCENTILES = (50.0, 95.0, 99.0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
# The fields the readers need: fastavro resolves the writer's schema into this one, so only
# these are built per record. Timestamps still arrive as datetimes (the writer's logical type).
_TIMESTAMPS_SCHEMA = projection("prediction", ("appended_time", "feature_time"))


class LatencyError(RtmlError):
    """The predictions topic cannot be read, or a snapshot file is missing or malformed."""


def millis(value: datetime | int) -> int:
    """Exact ms since the epoch of a timestamp-millis field (fastavro gives a datetime)."""
    if isinstance(value, datetime):
        return (value - _EPOCH) // _ONE_MS
    return int(value)


def _hdr(word_size: int = 8) -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS, word_size=word_size)


@dataclass
class Histogram:
    """An HdrHistogram of µs values, with the values clamped into its range counted."""

    hdr: HdrHistogram = field(default_factory=_hdr)
    below: int = 0  # negative values, recorded as 0
    above: int = 0  # values above 60 s, recorded as 60 s

    def record(self, value_us: int) -> None:
        """Record one value, clamped into [0, 60 s]."""
        if value_us < 0:
            self.below += 1
            value_us = 0
        elif value_us > HIGHEST_US:
            self.above += 1
            value_us = HIGHEST_US
        self.hdr.record_value(value_us)

    def add(self, other: Histogram) -> None:
        """Add `other`'s counts to this one (histograms of the same range merge exactly)."""
        self.hdr.add(other.hdr)
        self.below += other.below
        self.above += other.above

    @property
    def count(self) -> int:
        """Values recorded within the range."""
        return self.hdr.get_total_count()

    def percentile_ms(self, percentile: float) -> float:
        """The value (ms) at or below which `percentile` % of the records fall; NaN if empty."""
        if not self.count:
            return math.nan
        return self.hdr.get_value_at_percentile(percentile) / 1000

    def max_ms(self) -> float:
        """The largest value recorded, in ms (NaN when empty)."""
        return self.hdr.get_max_value() / 1000 if self.count else math.nan

    def buckets(self) -> pd.DataFrame:
        """The recorded values (ms, the top of each HDR bucket) and their counts, for a plot."""
        rows = [
            (item.value_iterated_to / 1000, item.count_at_value_iterated_to)
            for item in self.hdr.get_recorded_iterator()
        ]
        return pd.DataFrame(rows, columns=["value_ms", "count"])

    def encode(self) -> dict[str, Any]:
        """A JSON-able form: HdrHistogram's compressed base64 and the clamp counters."""
        return {"hdr": self.hdr.encode().decode("ascii"), "below": self.below, "above": self.above}

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> Histogram:
        """A histogram from `encode`'s form."""
        out = cls()
        out.hdr.add(HdrHistogram.decode(data["hdr"]))
        out.below, out.above = int(data["below"]), int(data["above"])
        return out


def measures_us(appended_ms: int, feature_ms: int, predicted_ms: int) -> dict[str, int]:
    """The three measures of one prediction, in µs, from its timestamps in ms.

    They are a week 3 exercise (`latency_measures`): RTML_IMPL=labs measures with the
    learner's function.
    """
    return exercise("latency_measures")(appended_ms, feature_ms, predicted_ms)


@dataclass(frozen=True)
class Summary:
    """One measure over a window: how many records and p50/p95/p99/max in ms."""

    measure: str
    count: int
    p50: float
    p95: float
    p99: float
    max: float
    below: int
    above: int


@dataclass
class LatencySnapshot:
    """The histograms of each measure over one span of prediction time, mergeable."""

    histograms: dict[str, Histogram]
    start_ms: int | None  # the span (prediction record time) the histograms cover
    end_ms: int | None

    def summary(self) -> list[Summary]:
        """p50/p95/p99/max and counts of each measure, in ms."""
        out = []
        for name in MEASURES:
            h = self.histograms[name]
            p50, p95, p99 = (h.percentile_ms(p) for p in PERCENTILES)
            out.append(Summary(name, h.count, p50, p95, p99, h.max_ms(), h.below, h.above))
        return out

    def table(self) -> pd.DataFrame:
        """The summary as a frame, one row per measure."""
        return pd.DataFrame([s.__dict__ for s in self.summary()]).set_index("measure")

    def merge(self, other: LatencySnapshot) -> LatencySnapshot:
        """A new snapshot with the counts of both (e.g. two benchmark instances)."""
        merged = {name: Histogram() for name in MEASURES}
        for name, h in merged.items():
            h.add(self.histograms[name])
            h.add(other.histograms[name])
        starts = [t for t in (self.start_ms, other.start_ms) if t is not None]
        ends = [t for t in (self.end_ms, other.end_ms) if t is not None]
        return LatencySnapshot(merged, min(starts) if starts else None, max(ends) if ends else None)

    def to_json(self) -> str:
        """The snapshot as JSON, histograms compressed."""
        return json.dumps(
            {
                "start_ms": self.start_ms,
                "end_ms": self.end_ms,
                "histograms": {name: h.encode() for name, h in self.histograms.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> LatencySnapshot:
        """A snapshot from `to_json`'s text."""
        data = json.loads(text)
        return cls(
            {name: Histogram.decode(data["histograms"][name]) for name in MEASURES},
            data["start_ms"],
            data["end_ms"],
        )

    def write(self, path: Path) -> None:
        """Write the snapshot to `path` atomically, so a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as out:
            out.write(self.to_json())
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> LatencySnapshot:
        """The snapshot written at `path`, or a LatencyError saying nobody writes it."""
        try:
            return cls.from_json(path.read_text())
        except FileNotFoundError:
            raise LatencyError(
                f"No latency snapshot at {path}: is the process that writes it running?"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise LatencyError(f"The latency snapshot {path} is malformed: {exc}.") from exc


class LatencyHistograms:
    """Each measure's histogram since the start, and one per second for the last `keep_s`.

    Records are placed by their prediction record timestamp. A window merges the per-second
    histograms it covers, so "the last N seconds" costs N merges, not a pass over records.
    Seconds older than `keep_s` before the newest one are dropped from the windows (they
    stay in the total), which keeps memory bounded: about 70 KB per measure and second.
    """

    def __init__(self, keep_s: int = 60) -> None:
        if keep_s < 1:
            raise LatencyError(f"Histograms keep at least 1 second, not {keep_s}.")
        self.keep_s = keep_s
        self.total = {name: Histogram() for name in MEASURES}
        self.seconds: dict[int, dict[str, Histogram]] = {}
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.records = 0  # predictions recorded
        # Looked up once, not per record: this runs for every prediction.
        self._measures = exercise("latency_measures")
        self.undecodable = 0  # records that are not a prediction: counted, then skipped

    def record(self, appended_ms: int, feature_ms: int, predicted_ms: int) -> None:
        """Record one prediction from its timestamps (ms)."""
        values = self._measures(appended_ms, feature_ms, predicted_ms)
        self.records += 1
        second = predicted_ms // 1000
        newest = second if self.last_ms is None else max(second, self.last_ms // 1000)
        bucket = None
        if second > newest - self.keep_s:
            bucket = self.seconds.get(second)
            if bucket is None:
                bucket = self.seconds[second] = {
                    name: Histogram(_hdr(word_size=4)) for name in MEASURES
                }
        for name, value in values.items():
            self.total[name].record(value)
            if bucket is not None:
                bucket[name].record(value)
        self.first_ms = predicted_ms if self.first_ms is None else min(self.first_ms, predicted_ms)
        if self.last_ms is None or predicted_ms > self.last_ms:
            self.last_ms = predicted_ms
            for old in [s for s in self.seconds if s <= newest - self.keep_s]:
                del self.seconds[old]

    def window(self, seconds: int, now_ms: int | None = None) -> LatencySnapshot:
        """The last `seconds` seconds up to `now_ms` (default: the newest record's second)."""
        if not 1 <= seconds <= self.keep_s:
            raise LatencyError(f"A window spans 1 to {self.keep_s} seconds here, not {seconds}.")
        end = (self.last_ms if now_ms is None else now_ms) or 0
        last = end // 1000
        merged = {name: Histogram() for name in MEASURES}
        for second, bucket in self.seconds.items():
            if last - seconds < second <= last:
                for name, h in merged.items():
                    h.add(bucket[name])
        return LatencySnapshot(merged, (last - seconds + 1) * 1000, (last + 1) * 1000)

    def snapshot(self) -> LatencySnapshot:
        """Everything recorded since the start."""
        copies = {name: Histogram() for name in MEASURES}
        for name, h in copies.items():
            h.add(self.total[name])
        end = None if self.last_ms is None else self.last_ms + 1
        return LatencySnapshot(copies, self.first_ms, end)


def snapshot_path(settings: Settings) -> Path:
    """Where `rtml observe latency --write` puts its window and the control room reads it."""
    return settings.cluster_dir / "latency.json"


def _start_offsets(
    consumer: Consumer, settings: Settings, topic: str, since_ms: int | None, timeout: float
) -> list[TopicPartition]:
    """Every partition of `topic`, at the first record at or after `since_ms` (None: the end)."""
    partitions = partitions_of(consumer, settings, topic, LatencyError, timeout)
    if since_ms is None:
        return [TopicPartition(topic, p, OFFSET_END) for p in partitions]
    wanted = [TopicPartition(topic, p, since_ms) for p in partitions]
    # A partition with nothing at or after since_ms answers -1 (OFFSET_END): read only new ones.
    return consumer.offsets_for_times(wanted, timeout=timeout)


def follow_predictions(
    settings: Settings,
    since_ms: int | None = None,
    histograms: LatencyHistograms | None = None,
    topic: str = "predictions",
    poll_s: float = 0.5,
) -> Iterator[LatencyHistograms]:
    """Feed `histograms` from `topic`, yielding them after every poll, until the caller stops.

    Reads every partition from `since_ms` (epoch ms; 0 for the beginning, None for only
    records that arrive from now on). It assigns partitions itself: no consumer group
    joins, nothing is committed, so it runs beside the service without disturbing it.
    """
    histograms = histograms or LatencyHistograms()
    decode = WireDeserializer(registry_client(settings), _TIMESTAMPS_SCHEMA)
    consumer = Consumer(
        settings.client_config(
            group_id=f"rtml-latency-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            logger=QUIET,
        )
    )
    try:
        try:
            consumer.assign(_start_offsets(consumer, settings, topic, since_ms, timeout=10))
        except KafkaException as exc:
            raise LatencyError(no_broker(settings)) from exc
        while True:
            for msg in consumer.consume(5000, timeout=poll_s):
                if msg.error() is not None:
                    continue
                try:
                    value = decode(msg.value())
                except SchemaError:
                    histograms.undecodable += 1
                    continue
                histograms.record(
                    millis(value["appended_time"]),
                    millis(value["feature_time"]),
                    msg.timestamp()[1],
                )
            yield histograms
    finally:
        consumer.close()


def read_latency(
    settings: Settings,
    since_ms: int = 0,
    until_count: int | None = None,
    timeout: float = 60.0,
    topic: str = "predictions",
) -> LatencyHistograms:
    """Histograms of every prediction from `since_ms` until `until_count` records (default:
    until the topic's end offsets as they were at the call) or `timeout` seconds."""
    deadline = time.monotonic() + timeout
    if until_count is None:
        until_count = _records_after(settings, topic, since_ms)
    for histograms in follow_predictions(settings, since_ms, topic=topic):
        seen = histograms.records + histograms.undecodable
        if seen >= until_count:
            return histograms
        if time.monotonic() > deadline:
            raise LatencyError(
                f"Read {seen} of {until_count} predictions within {timeout:g} s: is a broker down?"
            )
    raise AssertionError("follow_predictions never stops by itself")


def _records_after(settings: Settings, topic: str, since_ms: int) -> int:
    """How many records of `topic` are at or after `since_ms` now."""
    consumer = Consumer(
        settings.client_config(group_id=f"rtml-latency-{uuid.uuid4().hex[:8]}", logger=QUIET)
    )
    try:
        total = 0
        for tp in _start_offsets(consumer, settings, topic, since_ms, timeout=10):
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, tp.partition), timeout=10
            )
            total += max(0, high - tp.offset) if tp.offset >= 0 else 0
        return total
    except KafkaException as exc:
        raise LatencyError(no_broker(settings)) from exc
    finally:
        consumer.close()


def render(snapshot: LatencySnapshot, title: str) -> str:
    """A text table of one snapshot: count, p50, p95, p99 and max per measure, in ms."""
    lines = [title, f"{'MEASURE':<20} {'COUNT':>9} {'P50':>9} {'P95':>9} {'P99':>9} {'MAX':>9}"]
    for s in snapshot.summary():
        cells = " ".join(
            f"{v:>9.1f}" if not math.isnan(v) else f"{'-':>9}" for v in (s.p50, s.p95, s.p99, s.max)
        )
        line = f"{s.measure:<20} {s.count:>9,} {cells}"
        if s.below or s.above:
            line += f"  (clamped: {s.below} below 0, {s.above} above 60 s)"
        lines.append(line)
    return "\n".join(lines)
