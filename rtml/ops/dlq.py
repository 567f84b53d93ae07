"""Dead-letter queues from the operator's side: what they hold, each record, and redrive.

`summaries` counts what every DLQ of the catalogue holds, by error type; `records` reads
the records of one, with their origin and their value decoded where possible; `redrive`
sends records back to their origin topic once the cause is fixed.

Redrive is once-only, even when it is interrupted or run twice. It is a Kafka transaction
holding both the records it sends and the progress of the consumer group
`rtml-dlq-redrive-<stage>`, so either both happen or neither does; read_committed
consumers of the origin topic (librdkafka's default) never see the records of an aborted
attempt. The progress of each DLQ partition is the set of records redriven so far, stored
as the group's committed offset and its metadata string:

- the committed offset: every record below it was redriven;
- the metadata: ranges `first-last` of records at or above it that were redriven too
  (every record between `first` and `last` was), for records redriven out of order.

A full redrive sends every record not in the set; `--offsets` sends only the named ones.
A record that cannot be sent (no origin topic header, or its origin topic is gone) stays
out of the set, so the committed offset stops before it and each later run reports it
again until it is sent. Kafka limits the metadata to 4096 bytes (`offset.metadata.max.bytes`),
a few hundred ranges; a redrive that would need more says so and sends nothing more.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import OffsetSpec

from rtml.clients import admin, durable_producer
from rtml.config import Settings
from rtml.dlq import ORIGIN_FIELDS, PREFIX, dlq_topic
from rtml.errors import RtmlError
from rtml.ops.replay import list_offsets
from rtml.schemas.registry import SCHEMAS, SchemaError
from rtml.schemas.wire import WireDeserializer
from rtml.topics import DLQ_STAGES

REDRIVEN_FROM = PREFIX + "redriven_from"
# Kafka Connect's dead-letter headers (connect.dlq), read where rtml's own are missing.
CONNECT_PREFIX = "__connect.errors."
CONNECT_FIELDS = {
    "topic": "topic",
    "partition": "partition",
    "offset": "offset",
    "stage": "stage",
    "error_type": "exception.class.name",
    "error": "exception.message",
}
PREVIEW_CHARS = 200
METADATA_MAX = 4096  # Kafka's default offset.metadata.max.bytes
TRANSACTION_RECORDS = 1000  # records per redrive transaction


class DlqError(RtmlError):
    """A DLQ or one of its records cannot be found, read or redriven."""


@dataclass(frozen=True)
class DlqSummary:
    """What one stage's DLQ holds: its record count and how many failed with each error."""

    stage: str
    topic: str
    exists: bool
    records: int = 0  # end - start offsets summed over partitions (transaction markers too)
    error_types: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DlqRecord:
    """One dead-lettered record: where it sits, where it came from, its key and value.

    `value` is a dict when it decodes as Avro of its origin topic's schema (`value_format`
    "avro"), otherwise a truncated preview ("text" or "hex"), or None ("empty").
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    origin: Mapping[str, str]
    headers: tuple[tuple[str, bytes], ...]  # its own headers, without the origin ones
    key: str | None
    value: dict[str, Any] | str | None
    value_format: str


@dataclass(frozen=True)
class RedriveItem:
    """What redrive did (or, in a dry run, would do) with one DLQ record, and why."""

    partition: int
    offset: int
    origin_topic: str | None
    action: str  # "sent", "would send", "skipped" or "already redriven"
    reason: str = ""


@dataclass(frozen=True)
class RedriveReport:
    """Every DLQ record redrive looked at, in partition and offset order."""

    stage: str
    topic: str
    dry_run: bool
    items: tuple[RedriveItem, ...]

    def count(self, action: str) -> int:
        """How many items got `action` (sent, skipped, ...)."""
        return sum(1 for item in self.items if item.action == action)


@dataclass(frozen=True)
class Redriven:
    """The records of one DLQ partition redriven so far: every offset below `below`, and
    every record in one of the `ranges` (first, last), both included."""

    below: int = 0
    ranges: tuple[tuple[int, int], ...] = ()

    def __contains__(self, offset: int) -> bool:
        return offset < self.below or any(a <= offset <= b for a, b in self.ranges)

    @classmethod
    def parse(cls, offset: int, metadata: str | None) -> Redriven:
        """The state stored as a committed offset (negative: none) and its metadata."""
        ranges = []
        for part in (metadata or "").split(","):
            first, _, last = part.partition("-")
            if not part:
                continue
            if not (first.isdigit() and (last or first).isdigit()):
                raise DlqError(
                    f"Offset metadata {metadata!r} is not a redrive's progress (first-last "
                    "ranges): has another tool committed offsets for the redrive's group?"
                )
            ranges.append((int(first), int(last or first)))
        return cls(max(offset, 0), tuple(ranges))

    @property
    def metadata(self) -> str:
        """The ranges as the commit metadata string: `a-b` or `a`, comma separated."""
        return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in self.ranges)

    def add(self, done: Iterable[int], records: Sequence[int]) -> Redriven:
        """This state with the records at `done` added, over `records`: the offset of every
        record from `below` on, in order (offsets in between hold no record)."""
        if not records:
            return self
        done = set(done)
        redriven = [o in done or o in self for o in records]
        head = next((i for i, r in enumerate(redriven) if not r), len(records))
        below = records[head] if head < len(records) else records[-1] + 1
        ranges: list[tuple[int, int]] = []
        extend = False
        for offset, was in zip(records[head:], redriven[head:], strict=True):
            if was and extend:
                ranges[-1] = (ranges[-1][0], offset)
            elif was:
                ranges.append((offset, offset))
            extend = was
        return Redriven(max(self.below, below), tuple(ranges))


def parse_offsets(texts: Iterable[str]) -> list[tuple[int, int]]:
    """`P:O` items (several per text, comma-separated) as (partition, offset) pairs."""
    out = []
    for text in texts:
        for item in text.split(","):
            partition, sep, offset = item.strip().partition(":")
            if not (sep and partition.isdigit() and offset.isdigit()):
                raise DlqError(
                    f"{item.strip()!r} is not PARTITION:OFFSET: use e.g. --offsets 0:12,3:40."
                )
            out.append((int(partition), int(offset)))
    return out


def origin_of(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Where a dead-lettered record came from and why it failed, from rtml's origin headers
    or, for records Kafka Connect dead-lettered, from Connect's `__connect.errors.*`."""
    rtml: dict[str, str] = {}
    connect: dict[str, str] = {}
    for name, value in headers or ():
        text = (value or b"").decode(errors="replace")
        if name.startswith(PREFIX) and name[len(PREFIX) :] in ORIGIN_FIELDS:
            rtml[name[len(PREFIX) :]] = text
        elif name.startswith(CONNECT_PREFIX):
            connect[name[len(CONNECT_PREFIX) :]] = text
    if "error_type" not in rtml and "exception.class.name" in connect:
        connect["exception.class.name"] = connect["exception.class.name"].rsplit(".", 1)[-1]
    fallback = {f: connect[c] for f, c in CONNECT_FIELDS.items() if c in connect}
    return {**fallback, **rtml}


def is_origin_header(name: str) -> bool:
    """True for the headers a dead-letter writer adds (removed when a record is redriven)."""
    return name.startswith(CONNECT_PREFIX) or (
        name.startswith(PREFIX) and name[len(PREFIX) :] in ORIGIN_FIELDS
    )


def preview(data: bytes | None, limit: int = PREVIEW_CHARS) -> tuple[str, str | None]:
    """("text", the UTF-8 text) when `data` is printable text, else ("hex", its hex digits);
    truncated to about `limit` characters. ("empty", None) for no bytes at all."""
    if data is None:
        return "empty", None
    try:
        text = data.decode()
        if all(ch.isprintable() or ch in "\t\r\n" for ch in text):
            return "text", text if len(text) <= limit else f"{text[:limit]}… ({len(data)} bytes)"
    except UnicodeDecodeError:
        pass  # binary: shown as hex
    shown = data[: limit // 2].hex()
    return "hex", shown if len(data) <= limit // 2 else f"{shown}… ({len(data)} bytes)"


def format_time(ms: int | str) -> str:
    """Epoch milliseconds as ISO 8601 UTC, for people (the value itself if it is not a time)."""
    try:
        moment = dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        return str(ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def summaries(settings: Settings) -> list[DlqSummary]:
    """One summary per DLQ of the catalogue; a missing topic is reported, not an error."""
    topics = _topics(settings)
    present = [dlq_topic(stage) for stage in DLQ_STAGES if dlq_topic(stage) in topics]
    watermarks = _watermarks(settings, topics, present)
    out = []
    with _Reader(settings) as consumer:
        for stage in DLQ_STAGES:
            topic = dlq_topic(stage)
            if topic not in topics:
                out.append(DlqSummary(stage, topic, exists=False))
                continue
            marks = watermarks[topic]
            messages = _read(consumer, topic, {p: low for p, (low, _) in marks.items()}, marks)
            errors = Counter(origin_of(m.headers()).get("error_type", "unknown") for m in messages)
            held = sum(high - low for low, high in marks.values())
            out.append(DlqSummary(stage, topic, True, held, dict(errors.most_common())))
    return out


def records(
    settings: Settings,
    stage: str,
    limit: int = 20,
    partition: int | None = None,
    offset: int | None = None,
) -> list[DlqRecord]:
    """The first `limit` records of `stage`'s DLQ in partition and offset order.

    `partition` alone reads only that partition; with `offset`, from that record on (with
    `limit=1`, only it). Values decode as Avro of their origin topic when they can.
    """
    if offset is not None and partition is None:
        raise DlqError("An offset needs its partition: give both, e.g. partition 3, offset 12.")
    topics = _topics(settings)
    topic = _require(stage, topics)
    marks = _watermarks(settings, topics, [topic])[topic]
    if partition is not None:
        marks = {partition: _partition_marks(topic, marks, partition, offset)}
    starts = {p: low if offset is None else offset for p, (low, _) in marks.items()}
    with _Reader(settings) as consumer:
        messages = _read(consumer, topic, starts, marks, per_partition=limit)
    decoders: dict[str, WireDeserializer] = {}
    return [_record(settings, m, decoders) for m in messages[:limit]]


def redrive(
    settings: Settings,
    stage: str,
    offsets: Sequence[tuple[int, int]] | None = None,
    dry_run: bool = False,
) -> RedriveReport:
    """Send `stage`'s dead-lettered records back to their origin topics, each only once.

    Without `offsets`, every record not redriven before; with them, only those (partition,
    offset) records. Each goes to the topic of its `rtml.topic` header with its key, value
    and timestamp, its own headers, and `rtml.redriven_from` = `<dlq>:<partition>:<offset>`
    instead of the origin headers. See the module docstring for how once-only holds.
    """
    topics = _topics(settings)
    topic = _require(stage, topics)
    group = f"rtml-dlq-redrive-{stage}"
    with _Reader(settings, group) as consumer:
        producer = None if dry_run else _transactional(settings, group)
        marks = _watermarks(settings, topics, [topic])[topic]
        chosen: dict[int, set[int]] | None = None
        if offsets is not None:
            chosen = {}
            for p, o in offsets:
                _partition_marks(topic, marks, p, o)
                chosen.setdefault(p, set()).add(o)
            marks = {p: marks[p] for p in chosen}
        committed = consumer.committed([TopicPartition(topic, p) for p in marks], timeout=30)
        state = {tp.partition: Redriven.parse(tp.offset, tp.metadata) for tp in committed}
        starts = {p: max(state[p].below, low) for p, (low, _) in marks.items()}
        messages = _read(consumer, topic, starts, marks)
        items, sends = _decide(messages, state, chosen, topics, dry_run)
        if producer is not None:
            _send(producer, consumer, topic, messages, state, sends)
    return RedriveReport(stage, topic, dry_run, tuple(items))


def _decide(
    messages: Sequence[Message],
    state: Mapping[int, Redriven],
    chosen: Mapping[int, set[int]] | None,
    topics: Mapping[str, Any],
    dry_run: bool,
) -> tuple[list[RedriveItem], list[Message]]:
    """What to do with each record read: send it, skip it (and why), or leave it alone."""
    items: list[RedriveItem] = []
    sends: list[Message] = []
    found: set[tuple[int, int]] = set()
    for msg in messages:
        p, o = msg.partition(), msg.offset()
        found.add((p, o))
        if chosen is not None and o not in chosen[p]:
            continue
        origin = origin_of(msg.headers()).get("topic")
        if o in state[p]:
            if chosen is not None:
                items.append(RedriveItem(p, o, origin, "already redriven"))
        elif not origin:
            reason = "it has no rtml.topic header, so its origin is unknown"
            items.append(RedriveItem(p, o, None, "skipped", reason))
        elif origin not in topics:
            reason = f"its origin topic {origin} no longer exists"
            items.append(RedriveItem(p, o, origin, "skipped", reason))
        else:
            items.append(RedriveItem(p, o, origin, "would send" if dry_run else "sent"))
            sends.append(msg)
    for p, wanted in (chosen or {}).items():
        for o in sorted(wanted):
            if o < state[p].below:
                items.append(RedriveItem(p, o, None, "already redriven"))
            elif (p, o) not in found:
                reason = "no committed record there (a transaction marker or an aborted write)"
                items.append(RedriveItem(p, o, None, "skipped", reason))
    items.sort(key=lambda i: (i.partition, i.offset))
    return items, sends


def _send(
    producer: Any,
    consumer: Consumer,
    topic: str,
    messages: Sequence[Message],
    state: Mapping[int, Redriven],
    sends: Sequence[Message],
) -> None:
    """Send `sends` in transactions of TRANSACTION_RECORDS, each with the group's progress."""
    read: dict[int, list[int]] = {}
    for msg in messages:
        read.setdefault(msg.partition(), []).append(msg.offset())
    done: dict[int, set[int]] = {p: set() for p in read}
    for first in range(0, len(sends), TRANSACTION_RECORDS):
        batch = sends[first : first + TRANSACTION_RECORDS]
        for msg in batch:
            done[msg.partition()].add(msg.offset())
        progress = [
            _progress(topic, p, state[p].add(done[p], read[p]))
            for p in sorted({m.partition() for m in batch})
        ]
        try:
            producer.begin_transaction()
            for msg in batch:
                _produce(producer, topic, msg)
            producer.send_offsets_to_transaction(progress, consumer.consumer_group_metadata())
            producer.commit_transaction(60)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.txn_requires_abort():
                producer.abort_transaction(30)
            raise DlqError(
                f"Redrive of {topic} stopped ({error.str()}); the records of the last "
                "transaction were not sent, those before it were: run it again to finish."
            ) from exc


def _progress(topic: str, partition: int, after: Redriven) -> TopicPartition:
    """The group's offset that records `after`, or a sentence if Kafka could not store it."""
    if len(after.metadata) > METADATA_MAX:
        raise DlqError(
            f"Too many scattered records of {topic} partition {partition} would be redriven "
            "to record which: redrive the whole DLQ (without --offsets) instead."
        )
    return TopicPartition(topic, partition, after.below, metadata=after.metadata)


def _produce(producer: Any, dlq: str, msg: Message) -> None:
    """Send one DLQ record to its origin, as it was before it failed."""
    headers = [(k, v) for k, v in msg.headers() or () if not is_origin_header(k)]
    headers.append((REDRIVEN_FROM, f"{dlq}:{msg.partition()}:{msg.offset()}".encode()))
    origin = origin_of(msg.headers())
    stamp = origin.get("timestamp", "")
    producer.produce(
        origin["topic"],
        msg.value(),
        msg.key(),
        headers=headers,
        timestamp=int(stamp) if stamp.isdigit() else 0,
    )
    producer.poll(0)


def _transactional(settings: Settings, transactional_id: str) -> Any:
    """A transactional producer; starting it fences (aborts) an earlier redrive still open."""
    producer = durable_producer(settings, transactional_id=transactional_id)
    try:
        producer.init_transactions(30)
    except KafkaException as exc:
        raise DlqError(
            f"Kafka transactions could not start ({exc.args[0].str()}): is the cluster up "
            "(`rtml cluster status`)?"
        ) from exc
    return producer


def _record(settings: Settings, msg: Message, decoders: dict[str, WireDeserializer]) -> DlqRecord:
    """A record as `records` returns it: origin read, own headers kept, key and value shown."""
    origin = origin_of(msg.headers())
    value_format, value = _value(settings, msg.value(), origin.get("topic", ""), decoders)
    own = tuple((k, v or b"") for k, v in msg.headers() or () if not is_origin_header(k))
    return DlqRecord(
        msg.topic(),
        msg.partition(),
        msg.offset(),
        msg.timestamp()[1],
        origin,
        own,
        preview(msg.key())[1],
        value,
        value_format,
    )


def _value(
    settings: Settings, data: bytes | None, source: str, decoders: dict[str, WireDeserializer]
) -> tuple[str, Any]:
    """("avro", a dict) when `data` is Avro of `source`'s schema, else a preview."""
    if source in SCHEMAS and data:
        if source not in decoders:
            decoders[source] = WireDeserializer.for_topic(settings, source)
        with contextlib.suppress(SchemaError):  # not Avro of that schema: previewed instead
            return "avro", decoders[source](data)
    return preview(data)


def _require(stage: str, topics: Mapping[str, Any]) -> str:
    """The DLQ topic of `stage` (a stage of the catalogue, or any with a `<stage>.dlq` topic),
    failing with a sentence if it does not exist."""
    topic = dlq_topic(stage)
    if topic in topics:
        return topic
    if stage in DLQ_STAGES:
        raise DlqError(f"Topic {topic} does not exist: create it with `rtml topics apply`.")
    raise DlqError(f"There is no topic {topic}: the stages are {', '.join(DLQ_STAGES)}.")


def _topics(settings: Settings) -> dict[str, Any]:
    """Topic name -> metadata of every topic, or one sentence if the cluster does not answer."""
    client = admin(settings, timeout=10)
    try:
        return dict(client.list_topics(timeout=10).topics)
    except KafkaException as exc:
        raise DlqError(
            f"Cannot list topics at {settings.bootstrap} ({exc.args[0].str()}): is the cluster "
            "up (`rtml cluster status`)?"
        ) from exc


class _Reader:
    """A read_committed consumer that only assigns (never subscribes), closed on exit."""

    def __init__(self, settings: Settings, group: str = "rtml-dlq-read") -> None:
        self.consumer = Consumer(
            settings.client_config(
                group_id=group,
                enable_auto_commit=False,
                isolation_level="read_committed",
                enable_partition_eof=True,
            )
        )

    def __enter__(self) -> Consumer:
        return self.consumer

    def __exit__(self, *exc: object) -> None:
        self.consumer.close()


def _watermarks(
    settings: Settings, topics: Mapping[str, Any], names: Sequence[str]
) -> dict[str, dict[int, tuple[int, int]]]:
    """Topic -> partition -> (start, end) offsets of the topics `names`, in two requests."""
    out: dict[str, dict[int, tuple[int, int]]] = {t: {} for t in names}
    tps = [TopicPartition(t, p) for t in names for p in sorted(topics[t].partitions)]
    if not tps:
        return out
    client = admin(settings, timeout=10)  # kept: a collected client cancels its futures
    try:
        starts = list_offsets(client, tps, OffsetSpec.earliest())
        ends = list_offsets(client, tps, OffsetSpec.latest())
    except KafkaException as exc:
        raise DlqError(
            f"Cannot read the offsets of {', '.join(names)} ({exc.args[0].str()}): is the "
            "cluster up (`rtml cluster status`)?"
        ) from exc
    for topic, partition in starts:
        out[topic][partition] = (starts[topic, partition], ends[topic, partition])
    return out


def _partition_marks(
    topic: str, marks: Mapping[int, tuple[int, int]], partition: int, offset: int | None
) -> tuple[int, int]:
    """The watermarks of `partition`, checking it exists and holds `offset` (if given)."""
    if partition not in marks:
        raise DlqError(f"{topic} has no partition {partition}: it has 0 to {len(marks) - 1}.")
    low, high = marks[partition]
    if offset is not None and not low <= offset < high:
        held = f"offsets {low} to {high - 1}" if high > low else "no records"
        raise DlqError(f"{topic} has no record at {partition}:{offset}: partition holds {held}.")
    return low, high


def _read(
    consumer: Consumer,
    topic: str,
    starts: Mapping[int, int],
    marks: Mapping[int, tuple[int, int]],
    per_partition: int | None = None,
    timeout: float = 30.0,
) -> list[Message]:
    """Committed records of `topic` from `starts` to the end (or `per_partition` of each),
    in partition and offset order."""
    pending = {p for p, start in starts.items() if start < marks[p][1]}
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in pending])
    got: dict[int, list[Message]] = {p: [] for p in pending}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise DlqError(f"Could not read {topic} to its end within {timeout:g} s.")
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition())
            elif error.fatal():
                raise DlqError(f"Could not read {topic}: {error.str()}.")
            continue  # librdkafka retries transient errors itself
        if msg.partition() in pending:
            got[msg.partition()].append(msg)
            if per_partition is not None and len(got[msg.partition()]) >= per_partition:
                pending.discard(msg.partition())
    return [m for p in sorted(got) for m in got[p]]
