"""The online feature store: the latest features per customer and terminal, from `features`.

A synchronous scoring request cannot wait for the stream: it needs a customer's windows
now. So this store materialises the `features` topic into SQLite (one file, WAL mode, so
the HTTP process and a notebook read it while the follower writes):

- per customer, the whole latest features record: its windows, its time, its terminal;
- per terminal, its latest terminal windows (count and fraud risk over 1, 7, 30 days);
- per (customer, terminal) pair, the latest distance between them (profiles only).

"Latest" means largest event time, ties broken by transaction id, never "arrived last".
A customer's records share a partition and so arrive in the feature app's order, but a
record can still be late (re-sent, or an out-of-order transaction inside the app's grace
period): it must not overwrite a newer one, and it is counted (`late`). A terminal's
records come from every partition, interleaved as fetches happen to return them; ordering
by event time is what makes the result independent of that interleaving, and so makes a
rebuild identical to the first build.

Offsets live in the store, not in a consumer group. Each consumed batch is applied in one
SQLite transaction that also writes the next offset of every partition it read, so the
rows and the position can never disagree: after a crash the store resumes exactly where
its last commit left it, with no record applied twice or skipped (the pattern Kafka
Connect sinks call "offsets stored with the data"). Kafka's group commits would be a
second source of truth that a crash between the two writes could make disagree.

Event sourcing: the topic is the source of truth and the store a cache of it, so
`rebuild` replays `features` from offset 0 (or from a timestamp) into a fresh file, and
`fingerprint` digests the rows so two builds compare byte for byte.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    Message,
    Producer,
    TopicPartition,
)

from rtml.clients import QUIET, durable_producer, partitions_of
from rtml.config import Settings
from rtml.dlq import dlq_topic, origin_headers
from rtml.errors import RtmlError
from rtml.features.definitions import FEATURE_COLUMNS
from rtml.features.labels import to_millis
from rtml.schemas import SCHEMAS, SchemaError, load_schema
from rtml.schemas.wire import WireDeserializer

log = logging.getLogger(__name__)

TOPIC = "features"
STAGE = "serve"  # poison records go to serve.dlq, beside the prediction service's
DEFAULT_NAME = "default"
_BATCH = 2000
_TIMES = ("tx_datetime", "feature_time")
TERMINAL_COLUMNS = tuple(c for c in FEATURE_COLUMNS if c.startswith("terminal_"))
TERMINAL_ROW = ("terminal_id", "transaction_id", "tx_datetime", "feature_time", *TERMINAL_COLUMNS)
DISTANCE_ROW = ("customer_id", "terminal_id", "transaction_id", "tx_datetime", "terminal_distance")
# Counters kept with the rows; `late` is deterministic (a customer's records arrive in log
# order), `terminal_stale` is not (it depends on how partitions interleave) and is not
# part of the fingerprint.
STATS = ("records", "late", "duplicates", "terminal_stale", "poison")


class OnlineStoreError(RtmlError):
    """The online store cannot be opened, built or followed."""


def record_columns() -> tuple[str, ...]:
    """Every field of the features schema, in schema order: the columns of `customers`."""
    return tuple(f["name"] for f in json.loads(load_schema(SCHEMAS[TOPIC]))["fields"])


def store_path(settings: Settings, name: str = DEFAULT_NAME) -> Path:
    """The SQLite file of store `name` under the cluster's folder."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise OnlineStoreError(
            f"Store name {name!r} is not valid: use letters, digits, '-' or '_'."
        )
    return settings.cluster_dir / "online-store" / f"{name}.db"


def _schema(columns: Sequence[str]) -> str:
    rest = ", ".join(c for c in columns if c != "customer_id")
    terminal = ", ".join(TERMINAL_COLUMNS)
    return f"""
    CREATE TABLE IF NOT EXISTS customers (customer_id INTEGER PRIMARY KEY, {rest});
    CREATE TABLE IF NOT EXISTS terminals (
        terminal_id INTEGER PRIMARY KEY, transaction_id, tx_datetime, feature_time, {terminal});
    CREATE TABLE IF NOT EXISTS distances (
        customer_id INTEGER, terminal_id INTEGER, transaction_id, tx_datetime,
        terminal_distance, PRIMARY KEY (customer_id, terminal_id)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS offsets (
        topic TEXT, partition INTEGER, next_offset INTEGER, PRIMARY KEY (topic, partition));
    CREATE TABLE IF NOT EXISTS stats (name TEXT PRIMARY KEY, value INTEGER);
    """


@dataclass
class BatchResult:
    """What one applied batch did to the store."""

    records: int = 0
    late: int = 0
    duplicates: int = 0
    terminal_stale: int = 0
    poison: int = 0


class OnlineStore:
    """The SQLite store: `apply` writes a batch with its offsets, readers see whole batches.

    One writer (the follower, or `rebuild`) at a time, enforced by a lock file; any number
    of readers in any process. Each thread gets its own connection.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.columns = record_columns()
        self._local = threading.local()
        self._lock_file: IO[str] | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            conn.executescript(_schema(self.columns))
        finally:
            conn.close()

    @classmethod
    def open(cls, settings: Settings, name: str = DEFAULT_NAME) -> OnlineStore:
        """The store `name` of this cluster (created empty if it does not exist)."""
        return cls(store_path(settings, name))

    # --- connections and the writer lock -------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode never corrupts; a power cut may lose the last commits, and
        # their offsets with them, so the store re-reads those records: still exact.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def lock(self) -> None:
        """Become the only writer of this store, or say who is one."""
        if self._lock_file is None:
            self._lock_file = _writer_lock(self.path)

    def unlock(self) -> None:
        """Release the writer lock."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # --- writing ---------------------------------------------------------------------------

    def apply(
        self,
        records: Sequence[Mapping[str, Any]],
        positions: Mapping[int, int],
        poison: int = 0,
        topic: str = TOPIC,
    ) -> BatchResult:
        """Apply decoded features `records` (in arrival order) and store `positions` (the
        next offset per partition) in one transaction: all of it is visible, or none."""
        result = BatchResult(records=len(records), poison=poison)
        rows = [self._row(r) for r in records]
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            customers, result.late, result.duplicates = _newest(
                conn, rows, "customers", ("customer_id",)
            )
            terminals, late, duplicates = _newest(conn, rows, "terminals", ("terminal_id",))
            result.terminal_stale = late + duplicates
            distances, _, _ = _newest(conn, rows, "distances", ("customer_id", "terminal_id"))
            self._upsert(conn, "customers", self.columns, customers)
            self._upsert(conn, "terminals", TERMINAL_ROW, terminals)
            self._upsert(conn, "distances", DISTANCE_ROW, distances)
            conn.executemany(
                "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                [(topic, p, o) for p, o in positions.items()],
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

    def _row(self, record: Mapping[str, Any]) -> dict[str, Any]:
        row = {c: record.get(c) for c in self.columns}
        for name in _TIMES:
            row[name] = to_millis(row[name])
        return row

    @staticmethod
    def _upsert(
        conn: sqlite3.Connection,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        if not rows:
            return
        names = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        conn.executemany(
            f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({marks})",
            [tuple(r[c] for c in columns) for r in rows],
        )

    # --- reading ---------------------------------------------------------------------------

    def customer(self, customer_id: int) -> dict[str, Any] | None:
        """The latest features record of `customer_id`, or None if the store has none."""
        return self._one("SELECT * FROM customers WHERE customer_id = ?", (customer_id,))

    def terminal(self, terminal_id: int) -> dict[str, Any] | None:
        """The latest terminal windows of `terminal_id`, or None."""
        return self._one("SELECT * FROM terminals WHERE terminal_id = ?", (terminal_id,))

    def distance(self, customer_id: int, terminal_id: int) -> float | None:
        """The latest known distance between the customer's home and the terminal."""
        row = self._one(
            "SELECT terminal_distance FROM distances WHERE customer_id = ? AND terminal_id = ?",
            (customer_id, terminal_id),
        )
        return None if row is None else row["terminal_distance"]

    def _one(self, sql: str, args: tuple) -> dict[str, Any] | None:
        cur = self.conn.execute(sql, args)
        values = cur.fetchone()
        if values is None:
            return None
        row = dict(zip((d[0] for d in cur.description), values, strict=True))
        for flag in ("is_weekend", "is_night"):
            if flag in row:
                row[flag] = bool(row[flag])
        return row

    def offsets(self, topic: str = TOPIC) -> dict[int, int]:
        """The next offset to read per partition, as committed with the rows."""
        cur = self.conn.execute(
            "SELECT partition, next_offset FROM offsets WHERE topic = ? ORDER BY partition",
            (topic,),
        )
        return dict(cur.fetchall())

    def stats(self) -> dict[str, int]:
        """Records applied, late, duplicate, stale terminal and poison counts."""
        found = dict(self.conn.execute("SELECT name, value FROM stats").fetchall())
        return {name: found.get(name, 0) for name in STATS}

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {
            t: self.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("customers", "terminals", "distances")
        }

    def fingerprint(self) -> str:
        """SHA-256 of every row of the three tables, sorted by key: equal digests mean equal
        stores. Offsets and counters are left out: they describe the reading, not the state."""
        digest = hashlib.sha256()
        for table, order in (
            ("customers", "customer_id"),
            ("terminals", "terminal_id"),
            ("distances", "customer_id, terminal_id"),
        ):
            digest.update(f"{table}\n".encode())
            for row in self.conn.execute(f"SELECT * FROM {table} ORDER BY {order}"):
                digest.update(json.dumps(row).encode() + b"\n")
        return digest.hexdigest()

    def close(self) -> None:
        """Close this thread's connection and release the writer lock."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        self.unlock()

    # --- Kafka ----------------------------------------------------------------------------

    def follow(self, settings: Settings, name: str = DEFAULT_NAME) -> Follower:
        """Start a background thread that keeps this store up to date from `features`.

        Takes the writer lock first, here, so a second writer is refused at once."""
        self.lock()
        try:
            follower = Follower(self, settings, name)
        except BaseException:
            self.unlock()
            raise
        follower.start()
        return follower


def _writer_lock(path: Path) -> IO[str]:
    """An exclusive lock on `path`'s lock file, held while the returned file stays open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path.with_suffix(".lock"), "w")  # noqa: SIM115 - held by the writer
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OnlineStoreError(
            f"The online store {path.stem} is being written by another process "
            "(`rtml online serve` follows it): stop that process, or use another --name."
        ) from None
    return handle


def _stored_order(
    conn: sqlite3.Connection, table: str, key: tuple[str, ...], keys: set[tuple]
) -> dict[tuple, tuple[int, int]]:
    """(event time, transaction id) of the stored row of each key in `keys`."""
    out: dict[tuple, tuple[int, int]] = {}
    wanted = sorted(keys)
    names = ", ".join(key)
    # SQLite allows at most 32,766 parameters per statement; stay far below it.
    step = 400
    for i in range(0, len(wanted), step):
        chunk = wanted[i : i + step]
        marks = ", ".join(["(" + ", ".join("?" * len(key)) + ")"] * len(chunk))
        sql = (
            f"SELECT {names}, tx_datetime, transaction_id FROM {table} "
            f"WHERE ({names}) IN (VALUES {marks})"
        )
        for row in conn.execute(sql, [v for k in chunk for v in k]):
            out[tuple(row[: len(key)])] = (row[-2], row[-1])
    return out


def _newest(
    conn: sqlite3.Connection, rows: Sequence[dict[str, Any]], table: str, key: tuple[str, ...]
) -> tuple[list[dict[str, Any]], int, int]:
    """The newest row per key among `rows` that is newer (event time, then transaction id)
    than what `table` holds, and how many rows were late and how many duplicates."""
    best = _stored_order(conn, table, key, {tuple(r[k] for k in key) for r in rows})
    winners: dict[tuple, dict[str, Any]] = {}
    late = duplicates = 0
    for row in rows:
        k = tuple(row[c] for c in key)
        order = (row["tx_datetime"], row["transaction_id"])
        current = best.get(k)
        if current is None or order > current:
            best[k] = order
            winners[k] = row
        elif order == current:
            duplicates += 1  # the same transaction again (at-least-once redelivery)
        else:
            late += 1
    return list(winners.values()), late, duplicates


# --- reading the topic -------------------------------------------------------------------


def _consumer(settings: Settings, name: str) -> Consumer:
    return Consumer(
        settings.client_config(
            # Assigned, never subscribed, never committed: the id only names the client.
            group_id=f"rtml-online-{name}-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False,
            enable_auto_offset_store=False,
            enable_partition_eof=False,
            isolation_level="read_committed",
            fetch_wait_max_ms=50,
            logger=QUIET,
        )
    )


class _Reader:
    """Consumes `features` in batches and applies each batch to a store with its offsets."""

    def __init__(
        self, store: OnlineStore, settings: Settings, name: str, dead_letter: bool
    ) -> None:
        self.store = store
        self.settings = settings
        self.name = name
        self.dead_letter = dead_letter
        self.decode = WireDeserializer.for_topic(settings, TOPIC)
        self.positions: dict[int, int] = {}
        self._producer: Producer | None = None

    def step(self, consumer: Consumer, timeout: float) -> BatchResult | None:
        """Consume one batch and apply it; None when nothing came.

        Waits up to `timeout` for the first record only, then takes what has arrived with
        it: `consume(n, timeout)` would wait out the whole timeout unless n records came,
        and every feature would reach the store that much later.
        """
        first = consumer.poll(timeout)
        if first is None:
            return None
        batch = [first, *consumer.consume(_BATCH - 1, timeout=0)]
        messages = [m for m in batch if m.error() is None]
        if not messages:
            return None
        records, poison = [], []
        for msg in messages:
            try:
                records.append(self.decode(msg.value()))
            except SchemaError as exc:
                poison.append((msg, exc))
            self.positions[msg.partition()] = msg.offset() + 1
        if poison and self.dead_letter:
            self._dead_letter(poison)
        return self.store.apply(records, dict(self.positions), len(poison))

    def _dead_letter(self, poison: list[tuple[Message, Exception]]) -> None:
        """Send poison records to serve.dlq, acknowledged before their offsets are stored."""
        if self._producer is None:
            self._producer = durable_producer(self.settings, quiet=True)
        for msg, exc in poison:
            self._producer.produce(
                dlq_topic(STAGE),
                key=msg.key(),
                value=msg.value(),
                headers=origin_headers(
                    topic=msg.topic(),
                    partition=msg.partition(),
                    offset=msg.offset(),
                    timestamp=msg.timestamp()[1],
                    group=f"rtml-online-{self.name}",
                    stage=STAGE,
                    error=exc,
                ),
            )
        if self._producer.flush(30) > 0:
            raise OnlineStoreError(
                f"Poison records could not be written to {dlq_topic(STAGE)} within 30 s."
            )


def rebuild(
    settings: Settings,
    name: str = DEFAULT_NAME,
    *,
    from_offset: int = 0,
    from_timestamp: int | None = None,
    timeout: float = 600.0,
) -> OnlineStore:
    """Replay `features` into a fresh store `name`, up to the end offsets seen at the start.

    From `from_offset` in every partition (0: the beginning), or from the first record whose
    Kafka timestamp is at least `from_timestamp` (ms). A features record carries its
    transaction's timestamp: the event time in replay, the append time in live mode.
    Poison records are counted, not dead-lettered again: the first build did that.
    """
    if from_offset < 0:
        raise OnlineStoreError(f"--from-offset {from_offset} is negative: use 0 or more.")
    path = store_path(settings, name)
    lock = _writer_lock(path)
    try:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        store = OnlineStore(path)
    except BaseException:
        lock.close()
        raise
    store._lock_file = lock
    try:
        consumer = _consumer(settings, name)
        try:
            start, end = _start_and_end(consumer, settings, from_offset, from_timestamp)
            reader = _Reader(store, settings, name, dead_letter=False)
            consumer.assign([TopicPartition(TOPIC, p, o) for p, o in start.items() if o < end[p]])
            left = {p for p, o in start.items() if o < end[p]}
            deadline = time.monotonic() + timeout
            while left:
                if time.monotonic() > deadline:
                    raise OnlineStoreError(
                        f"The rebuild of {name} did not reach the end of {TOPIC} within "
                        f"{timeout:g} s."
                    )
                reader.step(consumer, timeout=0.5)
                for p in list(left):
                    # Transaction markers take offsets but are never delivered: ask the
                    # consumer's position, not the last record's offset.
                    position = consumer.position([TopicPartition(TOPIC, p)])[0].offset
                    if max(position, reader.positions.get(p, 0)) >= end[p]:
                        left.discard(p)
                        # Records appended since the start are not part of this rebuild.
                        consumer.incremental_unassign([TopicPartition(TOPIC, p)])
            store.apply([], {p: max(o, reader.positions.get(p, o)) for p, o in start.items()})
        finally:
            consumer.close()
        return store
    finally:
        store.unlock()


def _start_and_end(
    consumer: Consumer, settings: Settings, from_offset: int, from_timestamp: int | None
) -> tuple[dict[int, int], dict[int, int]]:
    partitions = partitions_of(consumer, settings, TOPIC, OnlineStoreError)
    marks = {
        p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10) for p in partitions
    }
    end = {p: high for p, (_, high) in marks.items()}
    if from_timestamp is None:
        start = {p: min(max(from_offset, low), high) for p, (low, high) in marks.items()}
        return start, end
    found = consumer.offsets_for_times(
        [TopicPartition(TOPIC, p, from_timestamp) for p in partitions], timeout=10
    )
    # -1: no record at or after the timestamp in that partition, so nothing to read there.
    start = {tp.partition: tp.offset if tp.offset >= 0 else end[tp.partition] for tp in found}
    return start, end


class Follower(threading.Thread):
    """Keeps a store up to date: consume a batch, apply it with its offsets, repeat."""

    def __init__(self, store: OnlineStore, settings: Settings, name: str) -> None:
        super().__init__(name=f"online-store-{name}", daemon=True)
        self.store = store
        self.settings = settings
        self.store_name = name
        self.halt = threading.Event()
        self.error: str | None = None
        self.caught_up = threading.Event()
        self.lag: dict[int, int | None] = {}
        self.applied = 0
        # Asked here, in the caller's thread, so a cluster that is down fails at once.
        self.consumer = _consumer(settings, name)
        try:
            self.partitions = partitions_of(self.consumer, settings, TOPIC, OnlineStoreError)
        except OnlineStoreError:
            self.consumer.close()
            raise

    def run(self) -> None:
        """Follow `features` into the store until stopped; an error is kept for `/health`."""
        try:
            self._run()
        except Exception as exc:  # keep the reason for /health; the thread ends
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("The online store follower stopped")
        finally:
            self.store.close()

    def _run(self) -> None:
        store, consumer, partitions = self.store, self.consumer, self.partitions
        try:
            stored = store.offsets()
            reader = _Reader(store, self.settings, self.store_name, dead_letter=True)
            reader.positions = {p: stored[p] for p in partitions if p in stored}
            consumer.assign(
                [TopicPartition(TOPIC, p, stored.get(p, OFFSET_BEGINNING)) for p in partitions]
            )
            while not self.halt.is_set():
                result = reader.step(consumer, timeout=0.2)
                if result is not None:
                    self.applied += result.records
                self.lag = {p: _lag(consumer, p, reader.positions.get(p)) for p in partitions}
                if result is None and all(v == 0 for v in self.lag.values()):
                    self.caught_up.set()
        finally:
            consumer.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in hand is committed."""
        self.halt.set()
        self.join(timeout)


def _lag(consumer: Consumer, partition: int, position: int | None) -> int | None:
    """Records of `partition` not yet applied, from the watermark of the last fetch."""
    low, high = consumer.get_watermark_offsets(TopicPartition(TOPIC, partition), cached=True)
    if high < 0:
        return None
    return max(0, high - (position if position is not None else low))


@contextlib.contextmanager
def following(settings: Settings, name: str = DEFAULT_NAME) -> Iterator[Follower]:
    """A store of this cluster followed in the background while the `with` block runs."""
    follower = OnlineStore.open(settings, name).follow(settings, name)
    try:
        yield follower
    finally:
        follower.stop()
