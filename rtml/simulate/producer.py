"""Publish a simulated history to Kafka: reference data, replay in event time, live at a rate.

- `publish_reference` writes customers and terminals to their compacted topics, keyed by id,
  so a consumer that joins on them reads the current table.
- `replay` writes transactions in event-time order with the event time as the Kafka record
  timestamp, as fast as the cluster accepts them (or at `rate`), and interleaves each fraud
  label once event time has passed its label time, as chargebacks arrive days later.
- `live` emits transactions at a fixed rate with now-time, and each label `label_delay`
  seconds later in wall time.

Before anything is produced, `preflight` checks that the topics exist and the schemas are
registered. Every record then goes through one loop whose delivery reports count acked and
failed records, so nothing is lost without being counted. Transaction keys come from the
week 1 exercise `partition_key`, so with RTML_IMPL=labs a learner's own key is what Kafka
sees.
"""

from __future__ import annotations

import numbers
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import KafkaException, Producer
from tqdm.auto import tqdm

from rtml.clients import admin, durable_producer
from rtml.cluster.errors import ClusterError
from rtml.config import Settings
from rtml.impl import exercise
from rtml.schemas import registry_client
from rtml.schemas.wire import PreparedSerializer
from rtml.simulate.errors import SimulatorError
from rtml.simulate.generator import Simulation, simulate
from rtml.simulate.params import SimulationParams
from rtml.topics import TopicError

# Chosen by measurement on this 2-core machine, 3 co-located brokers (RF 3, acks=all,
# idempotent), replaying 356,300 transactions, 3-4 alternating rounds: linger.ms 5 / 10 / 20
# gave about 83K / 125K / 146K records/s, so replay lingers 20 ms and ships full batches.
# lz4, none and zstd, 256 KB or 1 MB batches, were within the noise (125-170K/s); lz4 at
# 256 KB keeps the bytes written to three replicas' disks small at no cost in rate.
PRODUCER_CONFIG: dict[str, object] = {
    "linger.ms": 20,
    "batch.size": 262_144,
    "compression.type": "lz4",
    # Java clients (and week 1's lesson) hash keys with murmur2; librdkafka's default is CRC32.
    # The same key must land in the same partition whoever produces it.
    "partitioner": "murmur2_random",
}
# Live mode is about latency, not volume: a record waits at most 5 ms for its batch.
LIVE_CONFIG: dict[str, object] = {"linger.ms": 5}
LIVE_LABEL_DELAY_S = 10.0  # a chargeback takes weeks; the lab scales it down to seconds
TOPICS = ("transactions", "customers", "terminals", "labels")
MAX_ERRORS = 5  # delivery errors kept verbatim in a report; the rest are only counted
_BATCH = 1024  # records between two polls for delivery reports and progress updates
_CHUNK = 50_000  # rows converted to Python objects at once: bounded memory on big histories


@dataclass(frozen=True)
class Stream:
    """How one DataFrame becomes records of one topic."""

    topic: str
    fields: Mapping[str, str]  # Avro field -> DataFrame column
    id_field: str  # names a record in errors; its value keys reference data and labels
    noun: str  # how an error names a record of this stream
    time_field: str | None = None  # Avro field whose value is the record timestamp


TRANSACTIONS = Stream(
    "transactions",
    {
        "transaction_id": "transaction_id",
        "tx_datetime": "event_time_ms",
        "customer_id": "customer_id",
        "terminal_id": "terminal_id",
        "tx_amount": "tx_amount",
    },
    "transaction_id",
    "Transaction",
    "tx_datetime",
)
LABELS = Stream(
    "labels",
    {
        "transaction_id": "transaction_id",
        "customer_id": "customer_id",
        "terminal_id": "terminal_id",
        "tx_fraud": "tx_fraud",
        "tx_datetime": "event_time_ms",
        "label_time": "label_time_ms",
    },
    "transaction_id",
    "The label of transaction",
    "label_time",
)
CUSTOMERS = Stream(
    "customers",
    {
        name: name
        for name in ("customer_id", "x", "y", "mean_amount", "std_amount", "mean_nb_tx_per_day")
    },
    "customer_id",
    "Customer",
)
TERMINALS = Stream(
    "terminals", {"terminal_id": "terminal_id", "x": "x", "y": "y"}, "terminal_id", "Terminal"
)

# (topic, key, value, timestamp in ms; 0 means "now")
Message = tuple[str, bytes, bytes, int]


class ProduceError(SimulatorError):
    """A run stopped on a bad record or was not fully acknowledged; `report` counts what went."""

    def __init__(self, message: str, report: ProduceReport) -> None:
        super().__init__(message)
        self.report = report


class TokenBucket:
    """Allows `rate` tokens per second on average, and bursts of at most `burst` tokens.

    Tokens accrue with time and each record takes one. Sleeping is coarse, more so on a
    busy machine, so the bucket holds up to 100 ms of tokens by default: after an oversleep
    the records that are due go out at once and the average rate holds. It starts empty,
    so T seconds give rate x T tokens. `clock` and `sleep` are injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = _positive("rate", rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate / 10)
        self.clock, self.sleep = clock, sleep
        self.tokens = 0.0
        self.last = clock()

    def wait_time(self, n: float = 1.0) -> float:
        """Seconds until `n` tokens are available (0 if they are now); takes none."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        return max(0.0, (n - self.tokens) / self.rate)

    def take(self, n: float = 1.0) -> None:
        """Take `n` tokens, sleeping until they are available."""
        wait = self.wait_time(n)
        if wait > 0:
            self.sleep(wait)
            self.wait_time(n)  # credit the time slept; a short sleep leaves a debt for next time
        self.tokens -= n


@dataclass
class ProduceReport:
    """What a run produced: every record is counted once as acked or failed after the flush.

    `produced` is the number of records handed to the producer; after the final flush it
    equals acked + failed + `unconfirmed` (records still without a delivery report when the
    flush gave up, normally 0). `errors` keeps the first delivery errors verbatim.
    """

    produced: int = 0
    acked: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    topics: dict[str, int] = field(default_factory=dict)
    unconfirmed: int = 0
    interrupted: bool = False
    labels_pending: int = 0

    @property
    def rate(self) -> float:
        """Records per second, from the first send to the last acknowledgement."""
        return self.produced / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when every produced record was acknowledged."""
        return self.failed == 0 and self.unconfirmed == 0 and self.acked == self.produced

    def on_delivery(self, err: Any, msg: Any) -> None:
        """The delivery callback: librdkafka calls it once per record, from `poll`/`flush`."""
        if err is None:
            self.acked += 1
        else:
            self.failed += 1
            if len(self.errors) < MAX_ERRORS:
                self.errors.append(f"{msg.topic()}: {err.str()}")

    def summary(self) -> str:
        """One line for a person: what went where, how fast, and whether all of it arrived."""
        parts = ", ".join(f"{n:,} to {topic}" for topic, n in self.topics.items())
        line = (
            f"Produced {self.produced:,} records ({parts or 'none'}) in {self.duration_s:.1f} s, "
            f"{self.rate:,.0f} records/s; {self.acked:,} acknowledged"
        )
        if self.failed:
            line += f", {self.failed:,} FAILED (first: {self.errors[0]})"
        if self.unconfirmed:
            line += f", {self.unconfirmed:,} unconfirmed when the flush timed out"
        if self.labels_pending:
            line += f"; {self.labels_pending:,} labels were not yet due and were not sent"
        if self.interrupted:
            line += "; stopped by Ctrl-C"
        return line + "."


def records(
    frame: pd.DataFrame, fields: Mapping[str, str], booleans: Iterable[str] = ()
) -> Iterator[dict[str, Any]]:
    """The rows of `frame` as Avro-ready dicts {field: value}, in row order.

    Columns are converted a chunk at a time with `tolist()`, which yields plain Python ints,
    floats and bools at C speed (`iterrows` builds a Series per row and is ~50x slower).
    Integer 0/1 columns are turned into bools for the fields named in `booleans`.
    """
    names = tuple(fields)
    booleans = frozenset(booleans)
    arrays = []
    for name, column in fields.items():
        values = frame[column].to_numpy()
        if name in booleans and values.dtype.kind in "iu":
            values = values != 0
        arrays.append(values)
    for start in range(0, len(frame), _CHUNK):
        for row in zip(*(a[start : start + _CHUNK].tolist() for a in arrays), strict=True):
            yield dict(zip(names, row, strict=True))


def messages(
    stream: Stream,
    frame: pd.DataFrame,
    serializer: PreparedSerializer,
    key: Callable[[Mapping[str, Any]], bytes],
    at_ms: int = 0,
) -> Iterator[Message]:
    """(topic, key, value, timestamp) for each row, serialized; a bad row stops it clearly.

    The timestamp is the stream's time field, else `at_ms` (0: the time of sending)."""
    topic, time_field = stream.topic, stream.time_field
    for record in records(frame, stream.fields, serializer.booleans):
        yield (
            topic,
            _key(stream, key, record),
            _value(stream, serializer, record),
            (record[time_field] if time_field else at_ms),
        )


def preflight(settings: Settings, topics: Sequence[str] = TOPICS) -> dict[str, PreparedSerializer]:
    """Check the cluster, the topics and the registered schemas; return a serializer per topic.

    Runs before the first record, so a missing topic or schema stops a run with nothing
    produced, and the error says which command fixes it.
    """
    client = admin(settings, timeout=10)
    try:
        existing = client.list_topics(timeout=10).topics
    except KafkaException as exc:
        raise ClusterError(
            f"No Kafka cluster answers at {settings.bootstrap}: start it with `rtml cluster up`, "
            "or fix RTML_BOOTSTRAP_SERVERS."
        ) from exc
    missing = [t for t in topics if t not in existing]
    if missing:
        raise TopicError(
            f"Topic {missing[0]} does not exist on the cluster at {settings.bootstrap}"
            + (f" (nor {', '.join(missing[1:])})" if missing[1:] else "")
            + ": create the catalogue's topics with `rtml topics apply`."
        )
    registry = registry_client(settings)
    return {t: PreparedSerializer.for_topic(settings, t, registry) for t in topics}


def publish_reference(settings: Settings, sim: Simulation) -> dict[str, int]:
    """Write customers and terminals to their compacted topics (key = id); return the counts.

    Compaction keeps the latest record per key, so publishing the same profiles again
    leaves one record per id once the log cleaner has run. Each record is timestamped at
    the start of the history: the profiles hold from then on, so an event-time join
    (a transaction with the profile valid at its time) finds them for every transaction.
    """
    serializers = preflight(settings, ("customers", "terminals"))
    report = _run(
        settings,
        [
            messages(s, frame, serializers[s.topic], _id_key(s.id_field), sim.params.start_ms)
            for s, frame in ((CUSTOMERS, sim.customers), (TERMINALS, sim.terminals))
        ],
        total=len(sim.customers) + len(sim.terminals),
        desc="reference data",
        progress=False,
    )
    if not report.ok:
        raise ProduceError(f"Reference data was not fully acknowledged: {report.summary()}", report)
    return dict(report.topics)


def replay(
    settings: Settings,
    sim: Simulation,
    *,
    rate: float | None = None,
    progress: bool = True,
    labels: bool = True,
) -> ProduceReport:
    """Write the history in event-time order, keeping event times as record timestamps.

    Transactions are keyed by the `partition_key` exercise; each label follows once event
    time has reached its label time (a consumer of both topics sees a fraud confirmed only
    `label_delay_days` after it happened). Labels still due after the last transaction come
    at the end. `rate` (records/s) throttles; by default the cluster sets the pace.
    """
    if rate is not None:
        _positive("rate", rate)
    serializers = preflight(settings, ("transactions", "labels") if labels else ("transactions",))
    txs = _sorted(sim.transactions, "event_time_ms")
    stream = messages(TRANSACTIONS, txs, serializers["transactions"], exercise("partition_key"))
    total = len(txs)
    if labels:
        lbs = _sorted(sim.labels, "label_time_ms")
        label_stream = messages(LABELS, lbs, serializers["labels"], _id_key("transaction_id"))
        is_label = label_slots(txs["event_time_ms"].to_numpy(), lbs["label_time_ms"].to_numpy())
        stream = _interleave(stream, label_stream, is_label)
        total += len(lbs)
    if rate is not None:
        stream = _throttle(stream, rate)
    return _run(settings, [stream], total=total, desc="replay", progress=progress)


def live(
    settings: Settings,
    sim_or_params: Simulation | SimulationParams,
    *,
    rate: float,
    duration: float | None = None,
    progress: bool = True,
    label_delay: float = LIVE_LABEL_DELAY_S,
    labels: bool = True,
    stop: threading.Event | None = None,
    first_lap: int = 0,
    on_lap: Callable[[int], None] | None = None,
) -> ProduceReport:
    """Emit transactions at `rate` per second with now-time, until `duration` s, `stop` is
    set, or Ctrl-C.

    The simulated history supplies customers, terminals, amounts and frauds, in event-time
    order, looping when it runs out (each lap gets fresh transaction ids; `first_lap` lets a
    later run continue with ids no earlier run used, and `on_lap` is told each lap before its
    first record: `rtml.simulate.laps`). `tx_datetime`
    and the record timestamp are the wall-clock time of sending; each label is sent
    `label_delay` seconds later. Labels not yet due when the run stops are counted in
    `labels_pending`, not sent early.
    """
    _positive("rate", rate)
    if duration is not None:
        _positive("duration", duration)
    _positive("label_delay", label_delay, zero=True)
    sim = sim_or_params if isinstance(sim_or_params, Simulation) else simulate(sim_or_params)
    if sim.transactions.empty:
        raise SimulatorError(
            "The simulation has no transactions to emit: use more customers or terminals."
        )
    serializers = preflight(settings, ("transactions", "labels") if labels else ("transactions",))
    pending: deque[tuple[float, dict[str, Any]]] = deque()
    stream = _live_messages(
        _sorted(sim.transactions, "event_time_ms"),
        serializers,
        exercise("partition_key"),
        rate,
        duration,
        label_delay if labels else None,
        pending,
        stop,
        first_lap,
        on_lap,
    )
    report = _run(
        settings, [stream], total=None, desc="live", progress=progress, config=LIVE_CONFIG
    )
    report.labels_pending = len(pending)
    return report


def _live_messages(
    txs: pd.DataFrame,
    serializers: Mapping[str, PreparedSerializer],
    key: Callable[[Mapping[str, Any]], bytes],
    rate: float,
    duration: float | None,
    label_delay: float | None,
    pending: deque[tuple[float, dict[str, Any]]],
    stop: threading.Event | None = None,
    first_lap: int = 0,
    on_lap: Callable[[int], None] | None = None,
) -> Iterator[Message]:
    """Transactions paced at `rate` with now-time; labels released when their delay is over."""
    tx_ser, label_ser = serializers["transactions"], serializers.get("labels")
    label_key = _id_key("transaction_id")
    columns = {**TRANSACTIONS.fields, "tx_fraud": "tx_fraud"}
    lap_ids = int(txs["transaction_id"].max()) + 1
    bucket = TokenBucket(rate)  # made here: its tokens accrue from the first record on
    deadline = None if duration is None else time.monotonic() + duration
    lap = first_lap
    while True:
        if on_lap is not None:
            on_lap(lap)
        for row in records(txs, columns, ("tx_fraud",)):
            bucket.take()
            now = time.monotonic()
            if (deadline is not None and now >= deadline) or (stop is not None and stop.is_set()):
                return
            while pending and pending[0][0] <= now:
                label = pending.popleft()[1]
                yield (
                    "labels",
                    label_key(label),
                    _value(LABELS, label_ser, label),
                    label["label_time"],
                )
            now_ms = time.time_ns() // 1_000_000
            tx = {
                "transaction_id": row["transaction_id"] + lap * lap_ids,
                "tx_datetime": now_ms,
                "customer_id": row["customer_id"],
                "terminal_id": row["terminal_id"],
                "tx_amount": row["tx_amount"],
            }
            yield (
                "transactions",
                _key(TRANSACTIONS, key, tx),
                _value(TRANSACTIONS, tx_ser, tx),
                now_ms,
            )
            if label_delay is not None:
                label = {
                    "transaction_id": tx["transaction_id"],
                    "customer_id": tx["customer_id"],
                    "terminal_id": tx["terminal_id"],
                    "tx_fraud": row["tx_fraud"],
                    "tx_datetime": now_ms,
                    "label_time": now_ms + round(label_delay * 1000),
                }
                pending.append((now + label_delay, label))
        lap += 1


def _run(
    settings: Settings,
    streams: Sequence[Iterator[Message]],
    *,
    total: int | None,
    desc: str,
    progress: bool,
    config: Mapping[str, object] | None = None,
) -> ProduceReport:
    """Produce every message of `streams`, flush, and return the report.

    A record that cannot be serialized stops the run: what was sent before it is flushed
    and counted, then `ProduceError` carries that report. Ctrl-C also stops it, cleanly.
    """
    conf = {**PRODUCER_CONFIG, **(config or {})}
    producer = durable_producer(settings, quiet=True, **_underscored(conf))
    report = ProduceReport()
    bar = tqdm(
        total=total,
        desc=desc,
        unit=" msg",
        unit_scale=True,
        delay=1.0,  # short runs print no bar
        disable=not (progress and _interactive()),
    )
    started = time.perf_counter()
    bad: _BadRecord | None = None
    try:
        for stream in streams:
            _pump(producer, stream, report, bar)
    except _BadRecord as exc:
        bad = exc
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        report.unconfirmed = _flush(producer)
        report.duration_s = time.perf_counter() - started
        report.produced = report.acked + report.failed + report.unconfirmed
        bar.close()
    if bad is not None:
        raise ProduceError(
            f"{bad}; "
            f"{report.produced:,} records were produced before it ({report.acked:,} acknowledged, "
            f"{report.failed:,} failed) and none after it.",
            report,
        ) from bad.__cause__
    return report


def _pump(producer: Producer, stream: Iterator[Message], report: ProduceReport, bar: Any) -> None:
    """The hot loop: hand each message to librdkafka, serve delivery reports now and then.

    Per record this costs a few microseconds of Python, so it does nothing else: no per-record
    progress update or poll, and the delivery callback is one shared bound method.
    """
    produce, poll, on_delivery, counts = (
        producer.produce,
        producer.poll,
        report.on_delivery,
        report.topics,
    )
    sent = 0
    try:
        for topic, key, value, timestamp in stream:
            try:
                produce(topic, value, key, on_delivery=on_delivery, timestamp=timestamp)
            except BufferError:
                # librdkafka's queue is full: the cluster is slower than we are. Serve delivery
                # reports until there is room (backpressure), instead of failing the record.
                while True:
                    poll(0.05)
                    try:
                        produce(topic, value, key, on_delivery=on_delivery, timestamp=timestamp)
                        break
                    except BufferError:
                        continue
            counts[topic] = counts.get(topic, 0) + 1
            sent += 1
            if sent % _BATCH == 0:
                poll(0)
                bar.update(_BATCH)
    finally:
        bar.update(sent % _BATCH)


def _flush(producer: Producer, timeout: float = 600.0) -> int:
    """Wait for every delivery report; return how many records are still without one."""
    deadline = time.monotonic() + timeout
    remaining = producer.flush(1.0)
    while remaining and time.monotonic() < deadline:
        remaining = producer.flush(1.0)
    return remaining


class _BadRecord(Exception):
    """A record that cannot become a message; its text starts `ProduceError`'s sentence."""


def _name(stream: Stream, record: Mapping[str, Any]) -> str:
    return f"{stream.noun} {record.get(stream.id_field)!r}"


def _value(stream: Stream, serializer: PreparedSerializer, record: Mapping[str, Any]) -> bytes:
    try:
        return serializer(record)
    except Exception as exc:
        raise _BadRecord(
            f"{_name(stream, record)} does not fit the {stream.topic} schema "
            f"({serializer.explain(record, exc)})"
        ) from exc


def _key(
    stream: Stream, key: Callable[[Mapping[str, Any]], bytes], record: Mapping[str, Any]
) -> bytes:
    try:
        return key(record)
    except Exception as exc:
        name = getattr(key, "__name__", "the key function")
        raise _BadRecord(f"{name} raised {exc!r} on {_name(stream, record).lower()}") from exc


def _id_key(id_field: str) -> Callable[[Mapping[str, Any]], bytes]:
    """Key records by one id field as decimal text: the key of labels and reference data."""

    def key(record: Mapping[str, Any]) -> bytes:
        return str(record[id_field]).encode()

    return key


def label_slots(event_times: np.ndarray, label_times: np.ndarray) -> np.ndarray:
    """Where labels go in the merged replay order: True at a label's position.

    Both inputs are sorted. Label j goes after every transaction whose event time is at
    or before its label time, so a consumer that has read up to some event time has seen
    exactly the labels due by then.
    """
    transactions_before = np.searchsorted(event_times, label_times, side="right")
    slots = np.zeros(len(event_times) + len(label_times), dtype=bool)
    slots[np.arange(len(label_times)) + transactions_before] = True
    return slots


def _interleave(
    first: Iterator[Message], second: Iterator[Message], take_second: np.ndarray
) -> Iterator[Message]:
    """Merge two streams: position i comes from `second` where take_second[i] is True."""
    for from_second in take_second.tolist():
        yield next(second) if from_second else next(first)


def _throttle(stream: Iterator[Message], rate: float) -> Iterator[Message]:
    bucket = TokenBucket(rate)  # made on the first record, so preflight time earns no tokens
    for message in stream:
        bucket.take()
        yield message


def _positive(name: str, value: float, zero: bool = False) -> float:
    """`value` as a float > 0 (or >= 0), else a SimulatorError naming the parameter."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    number = float(value) if real else None
    if number is None or not (number >= 0 if zero else number > 0):
        raise SimulatorError(f"{name} must be a number {'>=' if zero else '>'} 0, got {value!r}.")
    return number


def _sorted(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """`frame` in `column` order (stable); the simulator's tables already are, at no cost."""
    if frame[column].is_monotonic_increasing:
        return frame
    return frame.sort_values(column, kind="stable")


def _underscored(conf: Mapping[str, object]) -> dict[str, object]:
    """librdkafka names as keyword arguments for `Settings.client_config` ('.' -> '_')."""
    return {k.replace(".", "_"): v for k, v in conf.items()}


def _interactive() -> bool:
    """A terminal or a notebook kernel: somewhere a progress bar is seen, not logged."""
    return "ipykernel" in sys.modules or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
