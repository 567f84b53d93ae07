"""One loop for the event-driven services of week 4: consume, handle, produce, commit.

The decision, card and notification services differ only in what they do with one record,
so they share this loop and each supplies a `Handler`. The loop gives all of them the same
production behaviour:

- **Errors.** A handler raises `Transient` for a failure worth retrying (a dependency did
  not answer; `TimeoutError` and `ConnectionError` count too): the record is tried again
  with exponential backoff, up to `retries` more times (`route_failure`, a week-4
  exercise, makes that call). Any other exception, or a transient one that outlasts its
  retries, sends the record
  unchanged to the stage's dead-letter topic with origin headers (`rtml.dlq`), counting the
  attempts. The stage never stops for a bad record, and `records == handled + dlq` holds
  for every instance (its status says so).
- **Guarantees.** Exactly-once: each batch is one Kafka transaction holding its outputs, its
  DLQ records and its input offsets, so `read_committed` readers see a batch's effects once
  or not at all; if Kafka aborts it, the handler forgets the batch and it is read again.
  At-least-once: outputs are produced at once and the offsets committed every
  `commit_every_s` after the producer has flushed (acks=all), so a crash loses nothing but
  repeats what was handled since the last commit. Readers of an at-least-once stage must be
  idempotent (deduplicate by message id).
- **A full producer queue** (librdkafka's `BufferError`) is waited out by serving delivery
  reports, never a crash.
- **Status.** Every second the instance writes its counters to a small JSON file
  (`<cluster dir>/stages/<stage>-<instance>-<group>.json`) that tests, the CLI and the control
  room read.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from rtml.clients import admin, durable_producer
from rtml.config import Settings
from rtml.dlq import dlq_topic, merge_headers, origin_headers
from rtml.errors import RtmlError
from rtml.impl import exercise
from rtml.observe import no_broker
from rtml.schemas import SchemaError

log = logging.getLogger(__name__)

Guarantee = Literal["at-least-once", "exactly-once"]
Headers = list[tuple[str, bytes]]
IDLE_S = 0.1  # how long an idle loop blocks for the next record
STATUS_EVERY_S = 1.0
STALE_AFTER_S = 5.0


class StageError(RtmlError):
    """A stage cannot start or cannot make its output durable."""


class Transient(Exception):
    """A failure worth retrying: the same record may well succeed a moment later."""


@dataclass(frozen=True)
class Out:
    """One record a handler wants produced."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    partition: int | None = None  # None: Kafka's partitioner picks it from the key


def decode_value(
    decode: Callable[[bytes | None], dict[str, Any]], data: bytes | None
) -> dict[str, Any]:
    """Decode a record's value; a registry that does not answer is `Transient` (retry), bytes
    that are not a known schema's Avro are poison (dead-letter)."""
    try:
        return decode(data)
    except SchemaError as exc:
        if isinstance(exc.__cause__, (OSError, httpx.HTTPError)):
            raise Transient(str(exc)) from exc
        raise


class Handler(Protocol):
    """What a stage does with its records; the loop does the rest."""

    def handle(self, msg: Message) -> list[Out]:
        """The records `msg` causes; raise `Transient` to retry, anything else to DLQ it."""
        ...

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Partitions were given to this instance (rebuild any state they need)."""
        ...

    def finished(self, committed: bool) -> None:
        """The batch handled since the last call is durable (True) or rolled back (False)."""
        ...


@dataclass(frozen=True)
class StageOptions:
    """How one instance of a stage runs; the defaults suit the lab."""

    group: str
    instance: int = 0
    guarantee: Guarantee = "exactly-once"
    max_batch: int = 500
    retries: int = 3  # more attempts after the first, for Transient failures
    backoff_ms: float = 50.0  # the first retry's wait; each later one doubles it
    commit_every_s: float = 1.0  # at-least-once only: how often offsets are committed
    isolation_level: str = "read_committed"

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch <= 100_000:
            raise StageError(f"A batch of {self.max_batch} records is not possible: use 1-100,000.")
        if not 0 <= self.retries <= 10 or not 0 <= self.backoff_ms <= 60_000:
            raise StageError(
                f"{self.retries} retries with a {self.backoff_ms:g} ms backoff is not possible: "
                "use 0-10 retries and 0-60,000 ms."
            )
        if not 0 <= self.commit_every_s <= 3600:
            raise StageError(
                f"Committing every {self.commit_every_s:g} s is not possible: use 0-3,600 s."
            )


@dataclass
class StageStatus:
    """One instance's counters; `records == handled + dlq` whenever a batch is done."""

    stage: str
    group: str
    instance: int
    pid: int
    guarantee: str
    state: str = "starting"  # starting, running, stopped
    partitions: list[int] = field(default_factory=list)
    records: int = 0  # input records of finished batches
    handled: int = 0  # of those, handled (their outputs produced)
    outputs: int = 0  # records produced by handled records
    dlq: int = 0  # of those, dead-lettered
    retries: int = 0  # retry attempts made
    aborted: int = 0  # batches rolled back (exactly-once)
    batches: int = 0
    last_error: str | None = None
    updated: float = field(default_factory=time.time)

    @property
    def stale(self) -> bool:
        """True when the instance stopped or has not written its status for a while."""
        return self.state == "stopped" or time.time() - self.updated > STALE_AFTER_S

    def line(self) -> str:
        """The counters as one line for logs and `rtml cards status`."""
        return (
            f"in {self.records:,}  handled {self.handled:,}  out {self.outputs:,}  "
            f"dlq {self.dlq:,}  retries {self.retries:,}  batches {self.batches:,}"
            + (f"  aborted {self.aborted:,}" if self.aborted else "")
        )


def status_file(settings: Settings, stage: str, instance: int, group: str) -> Path:
    """Where an instance writes its status: one file per stage, instance and group, so a
    notebook's or a test's instances never overwrite the lab's."""
    return settings.cluster_dir / "stages" / f"{stage}-{instance}-{group}.json"


def write_status(settings: Settings, status: StageStatus) -> None:
    """Replace the instance's status file atomically (a reader never sees half of it)."""
    status.updated = time.time()
    path = status_file(settings, status.stage, status.instance, status.group)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(status)))
    tmp.replace(path)


def read_statuses(settings: Settings, stage: str | None = None) -> list[StageStatus]:
    """Every status file written (of one stage, or of all), oldest stage name first."""
    folder = settings.cluster_dir / "stages"
    found = []
    for path in sorted(folder.glob(f"{stage or '*'}-*.json")):
        try:
            found.append(StageStatus(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # being replaced, or from an older version: skip it
    return found


def check_topics(settings: Settings, stage: str, topics: Sequence[str]) -> None:
    """Fail with one sentence if a topic the stage reads or writes is missing."""
    try:
        have = admin(settings, timeout=10).list_topics(timeout=10).topics
    except KafkaException as exc:
        raise StageError(no_broker(settings)) from exc
    missing = [t for t in (*topics, dlq_topic(stage)) if t not in have]
    if missing:
        raise StageError(
            f"The {stage} stage needs topic(s) {', '.join(missing)}: run `rtml topics apply`."
        )


class Stage:
    """One instance of a stage in its consumer group; `run` until `stop`."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        inputs: Sequence[str],
        outputs: Sequence[str],
        handler: Handler,
        options: StageOptions,
        consumer_config: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.handler = handler
        self.options = options
        self.consumer_config = consumer_config or {}
        self.status = StageStatus(
            name, options.group, options.instance, os.getpid(), options.guarantee
        )
        self.consumer: Consumer | None = None
        self.producer: Any = None
        self._stop = threading.Event()
        self._last_commit = time.monotonic()
        self._status_due = 0.0
        self._errors: list[str] = []
        self._sleep: Callable[[float], bool] = self._stop.wait
        self.route_failure = exercise("route_failure", settings.impl)

    @property
    def exactly_once(self) -> bool:
        """True when each batch is one Kafka transaction."""
        return self.options.guarantee == "exactly-once"

    def stop(self) -> None:
        """Ask `run` to finish its batch, commit and close (safe from a signal handler)."""
        self._stop.set()

    def run(self, ready: Callable[[], None] | None = None) -> None:
        """Consume and handle until `stop`; every batch started is finished."""
        check_topics(self.settings, self.name, [*self.inputs, *self.outputs])
        try:
            self._open()
            if ready is not None:
                ready()
            while not self._stop.is_set():
                first = self.consumer.poll(IDLE_S)
                if first is not None:
                    rest = self.consumer.consume(self.options.max_batch - 1, timeout=0)
                    self._batch([first, *rest])
                self.producer.poll(0)
                self._maybe_commit()
                if time.monotonic() >= self._status_due:
                    self._write_status()
        finally:
            self._close()

    # --- the loop ------------------------------------------------------------------------

    def _open(self) -> None:
        o = self.options
        tid = f"{o.group}-{o.instance}"
        extra = {"transactional_id": tid} if self.exactly_once else {}
        self.producer = durable_producer(self.settings, linger_ms=2, **extra)
        if self.exactly_once:
            try:
                # Fences a previous incarnation with this id: its open transaction is aborted.
                self.producer.init_transactions(30)
            except KafkaException as exc:
                raise StageError(
                    f"Kafka transactions could not start for {self.name} ({exc.args[0].str()}): "
                    "is the cluster up, with enough brokers for the transaction log?"
                ) from exc
        self.consumer = Consumer(
            self.settings.client_config(
                group_id=o.group,
                # Static membership: a restarted instance gets its partitions back at once.
                group_instance_id=tid,
                session_timeout_ms=15_000,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level=o.isolation_level,
                fetch_wait_max_ms=10,
                # At-least-once stores each batch's offsets itself, once it is handled.
                enable_auto_offset_store=False,
                **self.consumer_config,
            ),
            logger=log,
        )
        self.consumer.subscribe(self.inputs, on_assign=self._assigned, on_revoke=self._revoked)
        self.status.state = "running"
        print(
            f"{self.name} instance {o.instance} in group {o.group} ({o.guarantee}) reads "
            f"{', '.join(self.inputs)}; Ctrl-C stops it.",
            flush=True,
        )

    def _batch(self, msgs: list[Message]) -> None:
        """Handle one batch and make it durable (in one transaction when exactly-once)."""
        first: dict[tuple[str, int], int] = {}
        last: dict[tuple[str, int], int] = {}
        handled = outputs = dead = 0
        if self.exactly_once:
            self.producer.begin_transaction()
        for msg in msgs:
            if msg.error() is not None:  # an event, not a record: librdkafka retries by itself
                log.warning("Consumer: %s", msg.error().str())
                continue
            where = (msg.topic(), msg.partition())
            first.setdefault(where, msg.offset())
            last[where] = msg.offset() + 1
            outs, failure, attempts = self._handle(msg)
            if failure is None:
                handled += 1
                outputs += len(outs)
                for out in outs:
                    self._produce(out.topic, out.key, out.value, out.headers, out.partition)
            else:
                dead += 1
                self._produce(
                    dlq_topic(self.name),
                    msg.key(),
                    msg.value(),
                    merge_headers(msg.headers(), self._origin(msg, failure, attempts)),
                )
        if not last:
            if self.exactly_once:
                self.producer.abort_transaction()
            return
        if self.exactly_once and not self._commit_transaction(first, last):
            return
        if not self.exactly_once:
            for (topic, partition), offset in last.items():
                self.consumer.store_offsets(offsets=[TopicPartition(topic, partition, offset)])
            self.handler.finished(True)
        s = self.status
        s.records += handled + dead
        s.handled += handled
        s.outputs += outputs
        s.dlq += dead
        s.batches += 1

    def _handle(self, msg: Message) -> tuple[list[Out], BaseException | None, int]:
        """The handler's outputs, or the failure that sends `msg` to the DLQ, and attempts."""
        attempts = 0
        while True:
            attempts += 1
            try:
                return self.handler.handle(msg), None, attempts
            except Exception as exc:  # bad data, a bug, or a dependency down: never a crash
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                # The week-4 exercise seam decides: try again, or dead-letter now.
                route = self.route_failure(exc, attempts, self.options.retries)
                if route != "retry" or self._stop.is_set():
                    return [], exc, attempts
                self.status.retries += 1
                self._sleep(self.options.backoff_ms / 1000 * 2 ** (attempts - 1))

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        partition: int | None = None,
    ) -> None:
        extra = {} if partition is None else {"partition": partition}
        while True:
            try:
                self.producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    on_delivery=self._delivered,
                    **extra,
                )
                return
            except BufferError:
                # The local queue is full: the brokers are slower than we are. Wait for
                # deliveries to free room instead of failing (backpressure on ourselves).
                self.producer.poll(0.1)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err.str()}")

    def _commit_transaction(
        self, first: dict[tuple[str, int], int], last: dict[tuple[str, int], int]
    ) -> bool:
        """Commit the batch with its offsets; on an abort, roll back and read it again."""
        offsets = [TopicPartition(t, p, o) for (t, p), o in last.items()]
        try:
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata()
            )
            self.producer.commit_transaction(60)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not error.txn_requires_abort():
                raise StageError(
                    f"The {self.name} stage lost its transaction ({error.str()}): another "
                    "instance with the same --instance may have taken over."
                ) from exc
            self.producer.abort_transaction(60)
            for (topic, partition), offset in first.items():
                self.consumer.seek(TopicPartition(topic, partition, offset))
            self.handler.finished(False)
            self.status.aborted += 1
            log.warning("Transaction aborted (%s); the batch is read again.", error.str())
            return False
        self.handler.finished(True)
        return True

    def _maybe_commit(self, force: bool = False) -> None:
        """At-least-once: commit stored offsets once everything produced is acknowledged."""
        if self.exactly_once or self.consumer is None:
            return
        if not force and time.monotonic() - self._last_commit < self.options.commit_every_s:
            return
        self._last_commit = time.monotonic()
        left = self.producer.flush(30)
        if left or self._errors:
            raise StageError(
                f"The {self.name} stage could not write {left or len(self._errors)} record(s) "
                f"({(self._errors or ['timed out'])[0]}); nothing after the last commit was "
                "committed, so a restart handles it again."
            )
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("Could not commit offsets: %s", exc.args[0].str())

    def _origin(self, msg: Message, exc: BaseException, attempts: int) -> Headers:
        return origin_headers(
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            timestamp=msg.timestamp()[1],
            group=self.options.group,
            stage=self.name,
            error=exc,
            attempts=attempts,
        )

    # --- callbacks, status, close --------------------------------------------------------

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.status.partitions = sorted({tp.partition for tp in partitions})
        self.handler.assigned(partitions)
        log.info("%s: assigned %s", self.name, [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Exactly-once batches commit themselves; at-least-once commits what it handled.
        self._maybe_commit(force=True)

    def _write_status(self) -> None:
        self._status_due = time.monotonic() + STATUS_EVERY_S
        write_status(self.settings, self.status)

    def _close(self) -> None:
        try:
            if self.consumer is not None:
                self._maybe_commit(force=True)
                self.consumer.close()
            if self.producer is not None:
                self.producer.flush(30)
        finally:
            self.status.state = "stopped"
            self._write_status()
            print(f"{self.name} stopped: {self.status.line()}", flush=True)
