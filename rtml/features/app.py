"""The feature application: transactions in, each transaction with its features out.

A Quix Streams application in one consumer group (`rtml-features`); run one or more
processes and Kafka splits the 6 partitions between them. Per transaction:

1. decode and validate (Avro through the registry); a record that fails goes to
   `features.dlq` with origin headers, and the app keeps going;
2. stream-table join with the compacted `customers` topic (same key, same partitioner:
   co-partitioned, so each partition joins locally);
3. the customer windows (1, 7, 30 days), in the customer's state (RocksDB, with a
   changelog topic at replication factor 3 that restores it after a crash); a transaction
   older than the customer's latest by more than the grace period goes to
   `transactions.late`;
4. re-key by terminal id (a repartition topic), then a stream-table join with `terminals`
   (co-partitioned again, which is why the repartition uses the same murmur2 partitioner as
   the producers of `terminals`);
5. the terminal windows from the labels (a global table, see `labels.py`);
6. the features record, Avro, keyed by customer id, stamped with the time it was ready.

Live windows of every type run beside it on the same stream (`windows.py`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from quixstreams import Application, State, message_context
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.models import SerializationContext, Serializer

from rtml.clients import admin
from rtml.config import Settings
from rtml.dlq import dlq_topic, late_topic, origin_headers
from rtml.features.definitions import (
    MS_PER_DAY,
    WINDOW_DAYS,
    add_to_history,
    calendar_features,
    horizon_ms,
)
from rtml.features.errors import FeatureError
from rtml.features.labels import LabelTable, to_millis
from rtml.features.windows import WindowStats, add_live_windows
from rtml.impl import exercise
from rtml.partitioner import partition_for
from rtml.poll import until
from rtml.schemas import SchemaError
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.simulate.producer import PRODUCER_CONFIG

log = logging.getLogger(__name__)

STAGE = "features"
LABELLED = "transactions.labelled"
GROUP = "rtml-features"
Guarantee = Literal["at-least-once", "exactly-once"]
# The partitioner of every producer of keyed reference data (the simulator, Connect's Java
# producer); the repartition topic must use the same one for the terminal join to be local.
PARTITIONER = str(PRODUCER_CONFIG["partitioner"])
# The app's client settings: batched, compressed writes; short fetch waits for freshness.
APP_PRODUCER_CONFIG = {"partitioner": PARTITIONER, "linger.ms": 5, "compression.type": "lz4"}
APP_CONSUMER_CONFIG = {"fetch.wait.max.ms": 20}
REQUIRED = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount")


@dataclass(frozen=True)
class FeatureOptions:
    """How the feature app runs; the defaults suit the lab."""

    group: str = GROUP
    guarantee: Guarantee = "at-least-once"
    # Seconds between commits; None picks by guarantee. Each commit flushes the producer and
    # waits for every write to be acknowledged (tens of ms on a busy 3-broker cluster), so
    # frequent commits cost throughput. Under at-least-once, output flows between commits and
    # the interval only bounds what is reprocessed after a crash: 1 s. Under exactly-once,
    # output is visible only after its transaction commits, so the interval adds directly to
    # feature latency: 100 ms.
    commit_interval: float | None = None
    # How far out of order (event time) a customer's transaction may arrive and still be
    # used; older ones go to transactions.late.
    grace_ms: int = 60_000
    # Timestamps further ahead of the wall clock than this are rejected as poison.
    max_future_ms: int = MS_PER_DAY
    instance: str = "0"
    # Where a new group starts reading transactions. The tables (customers, terminals) are
    # always read whole: a join against a table read from its end would find nothing.
    start: Literal["earliest", "latest"] = "earliest"
    label_wait_s: float = 5.0
    # Seconds Quix's consumer waits for a batch. With joins, Quix reads in batches to order
    # records by time across topics, and confluent-kafka's batch read waits out its whole
    # timeout unless the batch fills: at lab rates every hop costs this much latency.
    poll_timeout: float = 0.01
    windows: bool = True
    label_join: bool = True


@dataclass
class FeatureStats:
    """What the app did, per outcome: in == out + dlq + late once it has caught up."""

    consumed: int = 0
    produced: int = 0
    dlq: int = 0
    late: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        """The counters and the features rate as one progress line."""
        rate = self.produced / max(time.monotonic() - self.started, 1e-9)
        return (
            f"in {self.consumed:,}  features {self.produced:,}  dlq {self.dlq:,}  "
            f"late {self.late:,}  ({rate:,.0f} features/s)"
        )


def connection(settings: Settings) -> ConnectionConfig:
    """The cluster's address and security settings, as Quix takes them."""
    return ConnectionConfig.from_librdkafka_dict(
        {"bootstrap.servers": settings.bootstrap, **settings.security}
    )


def check_topics(settings: Settings) -> int:
    """Check the input topics are co-partitioned for the joins; return their partition count.

    A stream-table join is local to a partition only if a key lands in the same partition
    number on both sides: same partition count, same partitioner (murmur2 everywhere).
    """
    try:
        topics = admin(settings, timeout=10).list_topics(timeout=10).topics
    except KafkaException as exc:
        raise FeatureError(
            f"No Kafka cluster answers at {settings.bootstrap}: start it with `rtml cluster up`."
        ) from exc
    needed = ("transactions", "customers", "terminals", "labels", "features")
    missing = [t for t in needed if t not in topics]
    if missing:
        raise FeatureError(
            f"The feature app needs topic(s) {', '.join(missing)}: run `rtml topics apply`."
        )
    joined = ("transactions", "customers", "terminals", "labels")
    counts = {t: len(topics[t].partitions) for t in joined}
    if len(set(counts.values())) != 1:
        raise FeatureError(
            "The joins need co-partitioned topics, but the partition counts differ ("
            + ", ".join(f"{t} {n}" for t, n in counts.items())
            + "): give them the same count, as the catalogue does."
        )
    for topic in counts:
        _check_partitioner(settings, topic, counts[topic])
    return counts["transactions"]


def _check_partitioner(settings: Settings, topic: str, partitions: int) -> None:
    """The first record of each partition sits where murmur2 puts its key, or the joins
    would look for keys in the wrong partition and silently miss them."""
    consumer = Consumer(
        settings.client_config(group_id="rtml-features-check", enable_auto_commit=False),
        logger=log,
    )
    try:
        for p in range(partitions):
            low, high = watermarks(consumer, TopicPartition(topic, p))
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            msg = consumer.poll(10)
            if msg is None or msg.error() is not None or msg.key() is None:
                continue
            expected = partition_for(msg.key(), partitions)
            if expected != p:
                raise FeatureError(
                    f"Topic {topic} was not written with the murmur2 partitioner: key "
                    f"{msg.key()!r} sits in partition {p}, murmur2 puts it in {expected}, so "
                    "the joins would miss it. Produce with partitioner=murmur2_random."
                )
    finally:
        consumer.close()


# Answers a partition gives while its leader moves (a node just restarted): ask again.
_LEADER_MOVING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


def watermarks(consumer: Consumer, tp: TopicPartition, timeout: float = 60.0) -> tuple[int, int]:
    """(low, high) offsets of `tp`, asked again for up to `timeout` s while its leader moves.

    Right after a node restarts, a partition's metadata can still name the old leader, which
    answers NOT_LEADER_FOR_PARTITION; a start-up check must not die of that.
    """

    def ask() -> tuple[int, int] | None:
        try:
            return consumer.get_watermark_offsets(tp, timeout=10)
        except KafkaException as exc:
            if exc.args[0].code() in _LEADER_MOVING:
                return None
            raise

    return until(ask, timeout, f"a leader for {tp.topic}[{tp.partition}]", interval=0.5)


def start_at_end(settings: Settings, group: str, topic: str, partitions: int) -> None:
    """Commit `group`'s offsets at the end of `topic` where it has none yet.

    Kafka's `auto.offset.reset` applies to every topic a group reads, and Quix reads the
    tables (customers, terminals) in the same group: "latest" there would leave them empty
    and, as Quix waits for every partition of a join to be read up to its end before it
    orders records across them, the app would stall. So the group starts at "earliest"
    and a new group's transactions are moved to their end here, before it joins.
    """
    consumer = Consumer(settings.client_config(group_id=group, enable_auto_commit=False))
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = consumer.committed(tps, timeout=10)
        fresh = [
            TopicPartition(topic, tp.partition, watermarks(consumer, tp)[1])
            for tp in committed
            if tp.offset < 0
        ]
        if fresh:
            consumer.commit(offsets=fresh, asynchronous=False)
    finally:
        consumer.close()


class FeatureApp:
    """Builds the Quix application and owns what it needs beyond Quix (label table, codecs)."""

    def __init__(self, settings: Settings, options: FeatureOptions | None = None) -> None:
        self.settings = settings
        self.options = options or FeatureOptions()
        self.stats = FeatureStats()
        self.window_stats = WindowStats()
        self.labels = LabelTable(settings, wait_s=self.options.label_wait_s)
        self.decode_tx = WireDeserializer.for_topic(settings, "transactions")
        self.decode_customer = WireDeserializer.for_topic(settings, "customers")
        self.decode_terminal = WireDeserializer.for_topic(settings, "terminals")
        self.decode_label = WireDeserializer.for_topic(settings, "labels")
        self.encode_features = PreparedSerializer.for_topic(settings, "features")
        self.customer_window: Callable[..., tuple[int, float]] = exercise("customer_window")
        self._source_partitions = check_topics(settings)
        if self.options.start == "latest":
            # Labels too, for the label join: the labels of transactions from now on come
            # after now. (The label table behind terminal risk reads all labels itself.)
            for topic in ("transactions", "labels"):
                start_at_end(settings, self.options.group, topic, self._source_partitions)
        # (source partition, repartition partition) -> latest event time seen
        self._progress: dict[tuple[int, int], int] = {}
        self.app = self._application()
        self._build()

    def run(self) -> None:
        """Process until stopped (SIGINT/SIGTERM), then close everything."""
        self.labels.start()
        try:
            self.app.run()
        finally:
            self.labels.close()
            log.info("features stopped: %s", self.stats.line())

    def stop(self) -> None:
        """Stop the Quix application (it commits and closes)."""
        self.app.stop()

    @property
    def commit_interval(self) -> float:
        """Seconds between commits: the option, else 0.1 under exactly-once and 1 otherwise."""
        if self.options.commit_interval is not None:
            return self.options.commit_interval
        return 0.1 if self.options.guarantee == "exactly-once" else 1.0

    def _application(self) -> Application:
        o = self.options
        state_dir = self.settings.cluster_dir / "features" / f"state-{o.instance}"
        return Application(
            broker_address=connection(self.settings),
            consumer_group=o.group,
            processing_guarantee=o.guarantee,
            commit_interval=self.commit_interval,
            auto_offset_reset="earliest",
            consumer_poll_timeout=o.poll_timeout,
            state_dir=state_dir,
            producer_extra_config=dict(APP_PRODUCER_CONFIG),
            consumer_extra_config={
                **APP_CONSUMER_CONFIG,
                # Static membership: a restarted instance rejoins under the same id and gets
                # its partitions back at once, instead of the group waiting out the dead
                # member's session (45 s by default). An instance that stays away loses its
                # partitions to the others after the session timeout.
                "group.instance.id": f"{o.group}-{o.instance}",
                "session.timeout.ms": 15_000,
            },
            loglevel="WARNING",
            # A record that raises inside a step has already been routed to the DLQ by the
            # step itself; anything else is a bug, and the app stops rather than skip it.
            on_processing_error=None,
        )

    def _build(self) -> None:
        app, o = self.app, self.options
        raw = app.topic("transactions", value_deserializer="bytes", key_deserializer="bytes")
        customers = app.topic("customers", value_deserializer="bytes", key_deserializer="bytes")
        terminals = app.topic("terminals", value_deserializer="bytes", key_deserializer="bytes")
        features = app.topic(
            "features", value_serializer=AvroValue(self.encode_features), key_serializer="bytes"
        )
        # Rejected and late records keep their original key and bytes.
        dlq = app.topic(dlq_topic(STAGE), value_serializer=RawValue(), key_serializer="bytes")
        late = app.topic(
            late_topic("transactions"), value_serializer=RawValue(), key_serializer="bytes"
        )

        sdf = app.dataframe(raw).apply(self._parse, metadata=True)
        sdf.filter(lambda r: "error" in r).set_headers(self._origin_headers).to_topic(dlq)
        good = sdf.filter(lambda r: "error" not in r)

        profiles = app.dataframe(customers).apply(self.decode_customer)
        good = good.join_asof(
            profiles, how="left", on_merge=self._merge_customer, name="customer-profiles"
        )
        good = good.apply(self._customer_windows, stateful=True)
        good.filter(lambda r: "late" in r).set_headers(self._origin_headers).to_topic(late)
        on_time = good.filter(lambda r: "late" not in r)

        by_terminal = on_time.group_by(
            lambda r: str(r["terminal_id"]).encode(),
            name="by-terminal",
            key_serializer="bytes",
            key_deserializer="bytes",
        )
        places = app.dataframe(terminals).apply(self.decode_terminal)
        by_terminal = by_terminal.join_asof(
            places, how="left", on_merge=self._merge_terminal, name="terminal-places"
        )
        if o.windows:
            add_live_windows(app, on_time, by_terminal, self.window_stats)
        if o.label_join:
            self._join_labels(on_time)
        out = by_terminal.apply(self._terminal_windows)
        out.to_topic(features, key=lambda r: str(r["customer_id"]).encode())

    def _join_labels(self, on_time: StreamingDataFrame) -> None:
        """A stream-stream join: each transaction with its label, which comes days later.

        Both sides are keyed by transaction id (transactions through a repartition, labels
        as produced), so the join is local to a partition. Quix's `join_interval` looks up
        the other side only in one time direction, which assumes records are processed in
        about timestamp order; across a repartition fed by 6 partitions at their own pace
        they are not (a label can be processed before its transaction arrives). So this join
        keeps whichever side comes first in state and emits the pair when the other
        arrives, in either order, as Kafka Streams' stream-stream joins do.
        """
        app = self.app
        # Only what the labelled record needs goes through the repartition and into state.
        slim = on_time.apply(lambda r: {"side": "tx", **{k: r[k] for k in REQUIRED}})
        by_id = slim.group_by(
            lambda r: str(r["transaction_id"]).encode(),
            name="by-transaction",
            key_serializer="bytes",
            key_deserializer="bytes",
        )
        labels = app.topic("labels", value_deserializer="bytes", key_deserializer="bytes")
        both = by_id.concat(app.dataframe(labels).apply(self._label))
        pairs = both.apply(_pair, stateful=True).filter(lambda r: r is not None)
        pairs.to_topic(app.topic(LABELLED, value_serializer="json", key_serializer="bytes"))

    # --- steps (each gets and returns one record) ---------------------------------------

    def _parse(self, value: bytes, key: bytes, timestamp: int, headers: Any) -> dict[str, Any]:
        """Decode and validate; an unusable record comes back as {"error", "raw", "key"}."""
        self.stats.consumed += 1
        try:
            tx = self.decode_tx(value)
        except SchemaError as exc:
            return self._reject(value, exc)
        missing = [f for f in REQUIRED if tx.get(f) is None]
        if missing:
            return self._reject(value, f"missing field(s) {', '.join(missing)}")
        amount = tx["tx_amount"]
        if not isinstance(amount, int | float) or not math.isfinite(amount) or amount < 0:
            return self._reject(value, f"tx_amount {amount!r} is not a finite amount >= 0")
        event_ms = to_millis(tx["tx_datetime"])
        if event_ms > time.time() * 1000 + self.options.max_future_ms:
            return self._reject(value, f"tx_datetime {event_ms} is in the future")
        tx["tx_datetime"] = event_ms
        tx["src"] = message_context().partition
        tx["raw"] = value
        return tx

    def _label(self, value: bytes) -> dict[str, Any]:
        """A label with its times in ms (state holds JSON, which has no datetime)."""
        label = self.decode_label(value)
        label["tx_datetime"] = to_millis(label["tx_datetime"])
        label["label_time"] = to_millis(label["label_time"])
        label["side"] = "label"
        return label

    def _reject(self, value: bytes, error: Exception | str) -> dict[str, Any]:
        self.stats.dlq += 1
        return {"error": error, "raw": value}

    def _origin_headers(
        self, record: dict[str, Any], key: Any, timestamp: int, headers: Any
    ) -> list[tuple[str, bytes]]:
        ctx = message_context()
        error = record.get("error") or f"late by more than {self.options.grace_ms} ms"
        return origin_headers(
            topic=ctx.topic,
            partition=ctx.partition,
            offset=ctx.offset,
            timestamp=timestamp,
            group=self.options.group,
            stage=STAGE,
            error=error,
        )

    @staticmethod
    def _merge_customer(tx: dict[str, Any], customer: dict[str, Any] | None) -> dict[str, Any]:
        out = dict(tx)
        out["home"] = (customer["x"], customer["y"]) if customer else None
        return out

    @staticmethod
    def _merge_terminal(tx: dict[str, Any], terminal: dict[str, Any] | None) -> dict[str, Any]:
        home = tx.get("home")
        out = dict(tx)
        out["terminal_distance"] = (
            math.hypot(home[0] - terminal["x"], home[1] - terminal["y"])
            if home and terminal
            else None
        )
        return out

    def _customer_windows(self, tx: dict[str, Any], state: State) -> dict[str, Any]:
        """Add the customer's 1/7/30-day count and mean amount; flag late arrivals."""
        t = tx["tx_datetime"]
        times: list[int] = state.get("t", [])
        amounts: list[float] = state.get("a", [])
        if times and t < times[-1] - self.options.grace_ms:
            self.stats.late += 1
            return {"late": True, "raw": tx["raw"]}
        add_to_history(times, amounts, t, tx["tx_amount"])
        state.set("t", times)
        state.set("a", amounts)
        out = {k: v for k, v in tx.items() if k not in ("raw", "key")}
        out["is_weekend"], out["is_night"] = calendar_features(t)
        for d in WINDOW_DAYS:
            count, mean = self.customer_window(times, amounts, t, d)
            out[f"customer_nb_tx_{d}d"] = count
            out[f"customer_avg_amount_{d}d"] = mean
        return out

    def _terminal_windows(self, tx: dict[str, Any]) -> dict[str, Any]:
        """Add the terminal windows from the labels known at the transaction's time."""
        t = tx["tx_datetime"]
        self.labels.catch_up(t)
        # Order holds only per (source partition, repartition partition) pair, each pair
        # advancing at its own pace: only the slowest pair's time says which labels no
        # window will need again, and only once every pair has been seen.
        self._progress[(tx["src"], message_context().partition)] = t
        if len(self._progress) == self._source_partitions**2:
            self.labels.forget_before(horizon_ms(min(self._progress.values())) - MS_PER_DAY)
        record = {
            "transaction_id": tx["transaction_id"],
            "tx_datetime": t,
            "customer_id": tx["customer_id"],
            "terminal_id": tx["terminal_id"],
            "tx_amount": tx["tx_amount"],
            "is_weekend": tx["is_weekend"],
            "is_night": tx["is_night"],
            "terminal_distance": tx.get("terminal_distance"),
        }
        for d in WINDOW_DAYS:
            record[f"customer_nb_tx_{d}d"] = tx[f"customer_nb_tx_{d}d"]
            record[f"customer_avg_amount_{d}d"] = tx[f"customer_avg_amount_{d}d"]
            count, risk = self.labels.window(tx["terminal_id"], t, d)
            record[f"terminal_nb_tx_{d}d"] = count
            record[f"terminal_risk_{d}d"] = risk
        record["feature_time"] = int(time.time() * 1000)
        self.stats.produced += 1
        return record


def _pair(record: dict[str, Any], state: State) -> dict[str, Any] | None:
    """Hold the first side of a transaction id; with the second, emit the labelled pair."""
    other = state.get("waiting")
    if other is None or other["side"] == record["side"]:
        state.set("waiting", record)  # the first side (a replayed duplicate replaces it)
        return None
    state.delete("waiting")
    tx, label = (record, other) if record["side"] == "tx" else (other, record)
    return _merge_label(tx, label)


def _merge_label(tx: dict[str, Any], label: dict[str, Any]) -> dict[str, Any]:
    """The labelled transaction: its own fields, its label, and how late the label came."""
    label_ms = label["label_time"]
    return {
        "transaction_id": tx["transaction_id"],
        "customer_id": tx["customer_id"],
        "terminal_id": tx["terminal_id"],
        "tx_datetime": tx["tx_datetime"],
        "tx_amount": tx["tx_amount"],
        "tx_fraud": bool(label["tx_fraud"]),
        "label_time": label_ms,
        "label_delay_ms": label_ms - tx["tx_datetime"],
    }


class AvroValue(Serializer):
    """Quix serializer for a topic whose values are Avro: dict in, wire-format bytes out."""

    def __init__(self, encode: PreparedSerializer) -> None:
        self.encode = encode

    def __call__(self, value: dict[str, Any], ctx: SerializationContext) -> bytes:
        return self.encode(value)


class RawValue(Serializer):
    """Quix serializer that writes a record's original bytes (DLQ and late topics)."""

    def __call__(self, value: dict[str, Any], ctx: SerializationContext) -> bytes:
        return value["raw"]


def bare_application(settings: Settings, group: str) -> Application:
    """A Quix Application with the feature app's client settings and state folder, for the
    apps that are measured against it (a passthrough, a one-feature peer): same clients, so
    a difference in speed is the work, not the configuration."""
    return Application(
        broker_address=connection(settings),
        consumer_group=group,
        commit_interval=1.0,
        auto_offset_reset="earliest",
        # Where the feature app keeps state, so `remove_group` clears it like any run.
        state_dir=settings.cluster_dir / "features" / "state-0",
        producer_extra_config=dict(APP_PRODUCER_CONFIG),
        consumer_extra_config=dict(APP_CONSUMER_CONFIG),
        loglevel="WARNING",
    )
