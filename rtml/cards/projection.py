"""The card projection: `card-events` folded into a SQLite read model the control room queries.

CQRS splits writing from reading. The card service decides commands on its event-sourced
aggregate and appends events; it keeps no table anyone can query. This projection reads
the events and keeps one (`rtml.cards.readmodel` queries it): a row per card, its state
folded with the card service's own fold (`rtml.cards.aggregate.applier`, the week-4
exercise seam: one copy of the rules), and a row per event with its trace ids, for
histories and traces. SQLite runs in WAL mode, so the control room reads while the
projection writes, and never sees half a batch.

Exactly once without relying on Kafka commits: the consumer's position is stored with the
state it produced. Each batch of events and the next offset of every partition it read are
written in ONE SQLite transaction (table `offsets`), and on start and on every partition
assignment the consumer seeks to the offsets in the file (the beginning for a partition it
never read). A crash before the commit loses the batch and its offsets together, so the
batch is read again; a crash after it keeps both, so nothing is read twice. The offsets
committed to Kafka after each batch are advisory, for the lag the control room shows; a
crash between the two writes can leave them behind the file, which is why nothing seeks to
them. The group (`rtml-projections`) shares the partitions out. `card-events` is written
inside Kafka transactions, so it is read with `isolation.level=read_committed`: events of
an aborted transaction are never projected.

Idempotent: a card service that delivers at least once can append an event twice, with the
same `event_id` (ids derive from the command). An event whose id is already in `events` is
counted as a duplicate, not applied. The same check covers a partition that moves to
another projection in the middle of a batch and is read again from the stored offset.

Poison: a record that does not decode, or whose event the fold refuses, goes to
`projections.dlq` with origin headers before its batch commits, and the projection goes
on. So `records == applied + duplicates + dlq`, per batch and in total (table `stats`,
written in the same transaction). A crash after a dead letter is sent but before its batch
commits sends it again: the dead-letter queue is at-least-once, and its origin headers
(partition, offset) tell the copies apart.

Rebuild: the topic is the source of truth and the file a cache of it, so `rebuild`
replays `card-events` from offset 0 into a new file, whose `ReadModel.content_hash` equals
the live read model's once both have read the same events. A card's events share a key,
so a partition, so they arrive in log order; a card's rows depend on its events only, so
how partitions interleave in batches does not change the result.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from rtml.cards.aggregate import applier
from rtml.cards.readmodel import STATS, ReadModel
from rtml.cards.state import CardState
from rtml.clients import QUIET, admin, durable_producer, partitions_of
from rtml.config import Settings
from rtml.dlq import dlq_topic, merge_headers, origin_headers
from rtml.errors import RtmlError
from rtml.features.labels import to_millis
from rtml.observe import no_broker
from rtml.schemas import SchemaError
from rtml.schemas.wire import WireDeserializer
from rtml.stage import StageStatus, Transient, decode_value, write_status
from rtml.trace import Trace, read_trace

log = logging.getLogger(__name__)

TOPIC = "card-events"
STAGE = "projections"
GROUP = "rtml-projections"
IDLE_S = 0.2  # how long an idle loop blocks for the next record
# What the fold raises for an event it cannot fold (an unknown type, a missing field).
REFUSALS = (ValueError, KeyError, TypeError)

SCHEMA = """
CREATE TABLE IF NOT EXISTS cards (
    card_id INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    blocked INTEGER NOT NULL,
    blocked_since INTEGER,
    block_reason TEXT,
    alerts INTEGER NOT NULL,
    declined INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    last_event_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    card_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    transaction_id INTEGER,
    reason TEXT NOT NULL,
    command_id TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    correlation_id TEXT,
    causation_id TEXT,
    "partition" INTEGER NOT NULL,
    "offset" INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_card ON events (card_id, version);
CREATE INDEX IF NOT EXISTS events_by_correlation ON events (correlation_id);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, occurred_at);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL,
    "partition" INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, "partition")
);
CREATE TABLE IF NOT EXISTS stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class ProjectionError(RtmlError):
    """The projection cannot start, read `card-events` or write its read model."""


def default_db_path(settings: Settings) -> Path:
    """The live read model of this cluster."""
    return settings.cluster_dir / "readmodel" / "cards.sqlite"


@dataclass(frozen=True)
class ProjectionOptions:
    """How the projection runs; the defaults are the live read model's."""

    db_path: Path | None = None  # None: `default_db_path(settings)`
    group: str = GROUP
    batch_size: int = 500
    subscribe: bool = True  # False: read every partition without joining the group (rebuild)
    dead_letter: bool = True  # False: count poison only (a rebuild: the live run sent it)

    def path(self, settings: Settings) -> Path:
        """The read model file: `db_path` if given, else the cluster's default."""
        return Path(self.db_path) if self.db_path is not None else default_db_path(settings)


@dataclass(frozen=True)
class Delivered:
    """One decoded card event and where it was read: what `write_batch` takes."""

    event: Mapping[str, Any]
    partition: int
    offset: int
    trace: Trace | None = None


Refused = list[tuple[Delivered, Exception]]
Fold = Callable[[CardState, Mapping[str, Any]], CardState]


@dataclass
class BatchResult:
    """What one batch did: `records == applied + duplicates + dlq`."""

    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dlq: int = 0
    refused: Refused = field(default_factory=list)


@dataclass
class ProjectionStatus:
    """This run's counters; `records == applied + duplicates + dlq` after every batch."""

    group: str
    state: str = "starting"  # starting, projecting, caught up, stopped
    partitions: list[int] = field(default_factory=list)
    records: int = 0  # card-events records read
    applied: int = 0  # events folded into the read model
    duplicates: int = 0  # events whose event_id was already applied
    dlq: int = 0  # records that did not decode or that `apply` refused
    batches: int = 0

    @property
    def balanced(self) -> bool:
        """True when every record read was applied, a duplicate, or dead-lettered."""
        return self.records == self.applied + self.duplicates + self.dlq

    def add(self, result: BatchResult) -> None:
        """Add one batch's counts."""
        for name in STATS:
            setattr(self, name, getattr(self, name) + getattr(result, name))
        self.batches += 1

    def line(self) -> str:
        """The counters as one line for logs and the CLI."""
        return (
            f"in {self.records:,}  applied {self.applied:,}  duplicates {self.duplicates:,}  "
            f"dlq {self.dlq:,}  batches {self.batches:,}"
        )


# --- the read model file ---------------------------------------------------------------------


def connect(path: Path) -> sqlite3.Connection:
    """A writing connection to the read model at `path`, created with its tables if new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode never corrupts; a power cut may lose the last commits, and their
    # offsets with them, so those events are read again: still exact.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def stored_offsets(conn: sqlite3.Connection) -> dict[int, int]:
    """Partition -> the next offset to read, as committed with the rows."""
    cur = conn.execute(
        'SELECT "partition", next_offset FROM offsets WHERE topic = ? ORDER BY "partition"',
        (TOPIC,),
    )
    return dict(cur.fetchall())


@dataclass(frozen=True)
class _Card:
    """A card's row: its folded state and what the read model adds to it."""

    state: CardState
    blocked_since: int | None = None
    block_reason: str | None = None
    last_event_at: int = 0

    def after(self, event: Mapping[str, Any], apply: Fold) -> _Card:
        """The row after `event`; its state comes from `apply`, the card service's fold."""
        state = apply(self.state, event)
        at = to_millis(event["occurred_at"])
        if not state.blocked:
            return _Card(state, None, None, at)
        if not self.state.blocked:
            return _Card(state, at, str(event.get("reason", "")), at)
        return replace(self, state=state, last_event_at=at)

    def row(self) -> tuple:
        s = self.state
        return (
            s.card_id,
            s.version,
            int(s.blocked),
            self.blocked_since,
            self.block_reason,
            s.alerts,
            s.declined,
            s.rejected,
            self.last_event_at,
        )


def _load_card(conn: sqlite3.Connection, card_id: int) -> _Card:
    found = conn.execute(
        "SELECT version, blocked, blocked_since, block_reason, alerts, declined, rejected, "
        "last_event_at FROM cards WHERE card_id = ?",
        (card_id,),
    ).fetchone()
    if found is None:
        return _Card(CardState(card_id))
    version, blocked, since, reason, alerts, declined, rejected, last = found
    state = CardState(card_id, version, bool(blocked), alerts, declined, rejected)
    return _Card(state, since, reason, last)


def _event_row(item: Delivered) -> tuple:
    e, trace = item.event, item.trace
    return (
        str(e["event_id"]),
        int(e["card_id"]),
        int(e["version"]),
        str(e["type"]),
        e.get("transaction_id"),
        str(e.get("reason", "")),
        str(e["command_id"]),
        to_millis(e["occurred_at"]),
        trace.correlation_id if trace else None,
        trace.causation_id if trace else None,
        item.partition,
        item.offset,
    )


def write_batch(
    conn: sqlite3.Connection,
    events: Sequence[Delivered],
    positions: Mapping[int, int],
    apply: Fold,
    *,
    undecodable: int = 0,
    dead_letter: Callable[[Refused], None] | None = None,
) -> BatchResult:
    """Apply `events` and store `positions` (the next offset per partition) in ONE
    transaction: all of it is visible, or none.

    `events` come in log order per card; `apply` folds one into its card's state
    (`rtml.cards.aggregate.applier`). `undecodable` records were read with them and
    dead-lettered by the caller; `dead_letter` gets the events `apply` refuses, before the
    commit, so a failure to dead-letter them rolls the whole batch back.
    """
    result = BatchResult(records=len(events) + undecodable, dlq=undecodable)
    cards: dict[int, _Card] = {}
    rows: list[tuple] = []
    seen: set[str] = set()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for item in events:
            try:
                row = _event_row(item)
                event_id, card_id = row[0], row[1]
                if (
                    event_id in seen
                    or conn.execute(
                        "SELECT 1 FROM events WHERE event_id = ?", (event_id,)
                    ).fetchone()
                ):
                    result.duplicates += 1
                    continue
                card = cards.get(card_id) or _load_card(conn, card_id)
                cards[card_id] = card.after(item.event, apply)
            except REFUSALS as exc:
                result.refused.append((item, exc))
                continue
            seen.add(event_id)
            rows.append(row)
        result.applied = len(rows)
        result.dlq += len(result.refused)
        if result.refused and dead_letter is not None:
            dead_letter(result.refused)
        conn.executemany(f"INSERT INTO events VALUES ({', '.join('?' * 12)})", rows)
        conn.executemany(
            f"INSERT OR REPLACE INTO cards VALUES ({', '.join('?' * 9)})",
            [card.row() for card in cards.values()],
        )
        # Positions only move forward: a batch read again after a rebalance (all of it
        # duplicates) must not move them back.
        conn.executemany(
            'INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, "partition") '
            "DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
            [(TOPIC, p, o) for p, o in positions.items()],
        )
        conn.executemany(
            "INSERT INTO stats VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET value = value + excluded.value",
            [(name, getattr(result, name)) for name in STATS],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return result


# --- Kafka -----------------------------------------------------------------------------------


def check_topics(settings: Settings, dead_letter: bool = True) -> None:
    """Fail with one sentence if a topic the projection reads or writes is missing."""
    needed = (TOPIC, dlq_topic(STAGE)) if dead_letter else (TOPIC,)
    try:
        have = admin(settings, timeout=10).list_topics(timeout=10).topics
    except KafkaException as exc:
        raise ProjectionError(no_broker(settings)) from exc
    missing = [t for t in needed if t not in have]
    if missing:
        raise ProjectionError(
            f"The card projection needs topic(s) {', '.join(missing)}: run `rtml topics apply`."
        )


class Projection:
    """The projection of `card-events` into one read model file; `run` until `stop`."""

    def __init__(self, settings: Settings, options: ProjectionOptions | None = None) -> None:
        self.settings = settings
        self.options = o = options or ProjectionOptions()
        if not 1 <= o.batch_size <= 100_000:
            raise ProjectionError(
                f"A batch of {o.batch_size} events is not possible: use 1 to 100,000."
            )
        self.path = o.path(settings)
        self.decode = WireDeserializer.for_topic(settings, TOPIC)
        self.apply = applier(settings.impl)  # the week-4 exercise seam, as the card service
        self.status = ProjectionStatus(o.group)
        self._stop = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._producer: Producer | None = None
        self._taken: dict[int, int] = {}  # next offsets of the batch being read
        self._status_due = 0.0

    def stop(self) -> None:
        """Ask `run` to finish its batch and close (safe from a signal handler or thread)."""
        self._stop.set()

    def run(self, ready: Callable[[], None] | None = None) -> ProjectionStatus:
        """Project until `stop`; every batch read is written before it returns. `ready` is
        called once the consumer has subscribed (as `rtml.stage.Stage.run` does)."""
        return self._run(None, ready)

    def run_until_caught_up(self, timeout: float = 600.0) -> ProjectionStatus:
        """Project until every event up to the end offsets found at the start is in the
        read model (or until `stop`); ProjectionError if `timeout` s pass first."""
        return self._run(timeout)

    # --- the loop ----------------------------------------------------------------------------

    def _run(
        self, timeout: float | None, ready: Callable[[], None] | None = None
    ) -> ProjectionStatus:
        check_topics(self.settings, self.options.dead_letter)
        self._conn = connect(self.path)
        consumer: Consumer | None = None
        try:
            consumer = self._consumer()
            ends = None if timeout is None else self._end_offsets(consumer)
            deadline = time.monotonic() + (timeout or 0)
            self._start(consumer)
            if ready is not None:
                ready()
            self.status.state = "projecting"
            log.info("Projecting %s into %s (group %s).", TOPIC, self.path, self.options.group)
            while not self._stop.is_set():
                if ends is not None:
                    if self._caught_up(consumer, ends):
                        self.status.state = "caught up"
                        break
                    if time.monotonic() > deadline:
                        raise ProjectionError(
                            f"The card projection did not reach the end of {TOPIC} within "
                            f"{timeout:g} s ({self.status.line()}): is another member of group "
                            f"{self.options.group} holding partitions?"
                        )
                self._step(consumer)
                if self.options.subscribe and time.monotonic() >= self._status_due:
                    self._write_status()
        finally:
            self._close(consumer)
        return self.status

    def _consumer(self) -> Consumer:
        return Consumer(
            self.settings.client_config(
                group_id=self.options.group,
                enable_auto_commit=False,  # the offsets live in the read model
                enable_auto_offset_store=False,
                enable_partition_eof=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                session_timeout_ms=10_000,
                fetch_wait_max_ms=50,
            ),
            logger=QUIET,
        )

    def _end_offsets(self, consumer: Consumer) -> dict[int, int]:
        parts = partitions_of(consumer, self.settings, TOPIC, ProjectionError)
        try:
            return {
                p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
                for p in parts
            }
        except KafkaException as exc:
            raise ProjectionError(no_broker(self.settings)) from exc

    def _start(self, consumer: Consumer) -> None:
        if self.options.subscribe:
            consumer.subscribe([TOPIC], on_assign=self._assigned, on_revoke=self._revoked)
            return
        parts = partitions_of(consumer, self.settings, TOPIC, ProjectionError)
        consumer.assign(self._seek_to(parts))
        self.status.partitions = parts

    def _seek_to(self, partitions: list[int]) -> list[TopicPartition]:
        """Each partition at the offset stored in the read model (or past the batch being
        read, which is written before the next poll), the beginning if never read."""
        assert self._conn is not None
        stored = stored_offsets(self._conn)
        return [
            TopicPartition(
                TOPIC, p, max(stored.get(p, OFFSET_BEGINNING), self._taken.get(p, OFFSET_BEGINNING))
            )
            for p in partitions
        ]

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.status.partitions = sorted(tp.partition for tp in partitions)
        consumer.assign(self._seek_to(self.status.partitions))
        log.info("Assigned partitions %s of %s.", self.status.partitions, TOPIC)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.status.partitions = []

    def _caught_up(self, consumer: Consumer, ends: Mapping[int, int]) -> bool:
        """True when every partition is read up to `ends`, by the file or by this consumer.

        Transaction markers take offsets but are never delivered, so the consumer's
        position (which moves past them) counts, not only the stored next offsets."""
        assert self._conn is not None
        done = stored_offsets(self._conn)
        held = consumer.assignment()
        for tp in consumer.position(held) if held else []:
            done[tp.partition] = max(done.get(tp.partition, 0), tp.offset)
        return all(done.get(p, 0) >= end for p, end in ends.items())

    def _step(self, consumer: Consumer) -> None:
        """Read one batch (what has arrived, up to `batch_size`) and write it."""
        assert self._conn is not None
        first = consumer.poll(IDLE_S)
        if first is None:
            return
        self._taken = {}
        batch = [first, *consumer.consume(self.options.batch_size - 1, timeout=0)]
        events: list[Delivered] = []
        sources: dict[tuple[int, int], Message] = {}
        poison: list[tuple[Message, Exception]] = []
        for msg in batch:
            err = msg.error()
            if err is not None:  # an event, not a record: librdkafka retries by itself
                log.warning("Consumer: %s", err.str())
                continue
            self._taken[msg.partition()] = msg.offset() + 1
            try:
                event = decode_value(self.decode, msg.value())
            except Transient as exc:
                self._read_again(consumer, batch, exc)
                return
            except SchemaError as exc:
                poison.append((msg, exc))
                continue
            sources[(msg.partition(), msg.offset())] = msg
            events.append(
                Delivered(event, msg.partition(), msg.offset(), read_trace(msg.headers()))
            )
        if not self._taken:
            return
        self._dead_letter(poison)
        result = write_batch(
            self._conn,
            events,
            self._taken,
            self.apply,
            undecodable=len(poison),
            dead_letter=lambda refused: self._dead_letter(
                [(sources[(d.partition, d.offset)], exc) for d, exc in refused]
            ),
        )
        if self.options.subscribe:
            # For the lag the Flow page shows only: positions are read from the file.
            consumer.commit(
                offsets=[TopicPartition(TOPIC, p, o) for p, o in self._taken.items()],
                asynchronous=True,
            )
        self._taken = {}
        self.status.add(result)

    def _read_again(self, consumer: Consumer, batch: list[Message], exc: Transient) -> None:
        """The registry did not answer: write nothing, wait, and read the batch again."""
        first: dict[int, int] = {}
        for msg in batch:
            if msg.error() is None:
                first.setdefault(msg.partition(), msg.offset())
        for partition, offset in first.items():
            consumer.seek(TopicPartition(TOPIC, partition, offset))
        self._taken = {}
        log.warning("%s; the batch is read again in 1 s.", exc)
        self._stop.wait(1.0)

    def _write_status(self) -> None:
        """The counters in the stages' status file, so `rtml cards status` lists them."""
        self._status_due = time.monotonic() + 1.0
        s = self.status
        write_status(
            self.settings,
            StageStatus(
                STAGE,
                s.group,
                0,
                os.getpid(),
                "exactly-once",
                state="stopped" if s.state == "stopped" else "running",
                partitions=s.partitions,
                records=s.records,
                handled=s.applied + s.duplicates,
                outputs=s.applied,
                dlq=s.dlq,
                batches=s.batches,
            ),
        )

    def _dead_letter(self, poison: list[tuple[Message, Exception]]) -> None:
        """Send poison records to projections.dlq, acknowledged before their batch commits."""
        if not poison:
            return
        for msg, exc in poison:
            log.warning(
                "%s partition %d offset %d to %s: %s",
                TOPIC,
                msg.partition(),
                msg.offset(),
                dlq_topic(STAGE),
                exc,
            )
        if not self.options.dead_letter:
            return
        if self._producer is None:
            self._producer = durable_producer(self.settings, quiet=True)
        for msg, exc in poison:
            self._producer.produce(
                dlq_topic(STAGE),
                key=msg.key(),
                value=msg.value(),
                headers=merge_headers(
                    msg.headers(),
                    origin_headers(
                        topic=msg.topic(),
                        partition=msg.partition(),
                        offset=msg.offset(),
                        timestamp=msg.timestamp()[1],
                        group=self.options.group,
                        stage=STAGE,
                        error=exc,
                    ),
                ),
            )
        if self._producer.flush(30) > 0:
            raise ProjectionError(
                f"Poison records could not be written to {dlq_topic(STAGE)} within 30 s: "
                "is the cluster up (`rtml cluster status`)?"
            )

    def _close(self, consumer: Consumer | None) -> None:
        try:
            if consumer is not None:
                consumer.close()
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self.status.state != "caught up":
                self.status.state = "stopped"
            if self.options.subscribe:
                self._write_status()
            log.info("Card projection stopped: %s", self.status.line())


def rebuild(settings: Settings, db_path: Path, timeout: float = 600.0) -> ReadModel:
    """Replay `card-events` from offset 0 to its current end into a new read model file.

    The live file is never touched: the rebuild refuses a path that exists, and writes a
    hidden file beside it that becomes `db_path` only once complete. Poison records are
    counted, not dead-lettered again: the live projection did that.
    """
    target = Path(db_path)
    if any(Path(f"{target}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
        raise ProjectionError(
            f"A rebuild writes a new read model and {target} exists: choose another path."
        )
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    options = ProjectionOptions(
        db_path=partial,
        group=f"{GROUP}-rebuild-{uuid.uuid4().hex[:8]}",
        subscribe=False,
        dead_letter=False,
    )
    try:
        Projection(settings, options).run_until_caught_up(timeout)
        os.replace(partial, target)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
    return ReadModel(target)
