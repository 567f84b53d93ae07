"""One transaction's path through the week-4 services, hop by hop, from its trace headers.

A transaction the model flags travels through four topics, written by four services:

    predictions (serve) -> card-commands (decisions) -> card-events (cards) -> notifications

Every message after the prediction carries the trace headers of `rtml.trace`: the same
correlation id (`tx-<transaction id>`) and the id of the message that caused it. So the
path of one transaction is the set of messages with its correlation id, and the causation
ids order them.

Finding them must not scan whole topics. The read model already indexes events by
correlation id (`ReadModel.trace`), with the partition and offset each was read from and
its time; everything else follows from keys and times:

- the event itself is read at its (partition, offset), for its append time;
- a card's commands and notifications are keyed by card id, so they sit in the one
  partition the murmur2 partitioner gives that key (`rtml.partitioner`);
- a prediction is keyed by transaction id, and its time is the event's `occurred_at` (the
  decision service stamps the command with the prediction's time, the card service the
  event with the command's);
- so each of them is read from `offsets_for_times` a little before that time, for a
  bounded span after it, matching the correlation id (or the key, for the prediction).

`trace_transaction` returns the hops found, in causal order; `missing` says which hops
the events call for but were not found in those spans.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from rtml.cards.decisions import PREDICTIONS
from rtml.cards.notifications import NOTIFICATIONS
from rtml.cards.notifications import TEXT as NOTIFYING
from rtml.cards.readmodel import ReadModel
from rtml.cards.service import COMMANDS, EVENTS
from rtml.cards.state import card_key
from rtml.clients import QUIET
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.observe import no_broker
from rtml.observe.latency import millis
from rtml.partitioner import partition_for
from rtml.schemas import SchemaError, projection, registry_client
from rtml.schemas.wire import WireDeserializer
from rtml.trace import read_trace, transaction_correlation

# The hops of a transaction's path, in the order they happen, and who writes each.
KINDS = ("prediction", "command", "event", "notification")
SERVICE = {
    "prediction": "serve",
    "command": "decisions",
    "event": "cards",
    "notification": "notifications",
}
TOPIC = {
    "prediction": PREDICTIONS,
    "command": COMMANDS,
    "event": EVENTS,
    "notification": NOTIFICATIONS,
}
BEFORE_MS = 10_000  # read from this long before a hop's expected time (producers' clocks)
HORIZON_S = 300.0  # ... up to this long after it (a service that was down catches up)
MAX_RECORDS = 5_000  # records read per partition span, at most
MAX_EVENTS = 20  # the newest events of one transaction that are traced
TABLE_COLUMNS = [
    "step",
    "hop",
    "service",
    "topic",
    "partition",
    "offset",
    "time",
    "after (ms)",
    "type",
    "what",
    "message id",
    "caused by",
]
_PREDICTION = projection(
    "prediction", ("transaction_id", "score", "decision", "model_version", "predicted_time")
)


class TraceError(RtmlError):
    """A transaction id is not valid, or the topics of its path cannot be read."""


@dataclass(frozen=True)
class Hop:
    """One message of a transaction's path: where it is, when it was appended, what it says."""

    kind: str  # prediction, command, event or notification
    topic: str
    partition: int
    offset: int | None  # None: not read from Kafka (the event's time is then its occurred_at)
    time_ms: int  # the record's Kafka timestamp: when its service wrote it
    message_id: str
    causation_id: str  # the message_id of the hop that caused it ("" for the prediction)
    name: str  # the decision, the command or event type, the notification kind
    what: str  # one line: the score, the reason, the text

    @property
    def service(self) -> str:
        """The service that wrote this hop's message."""
        return SERVICE[self.kind]


def parse_transaction_id(text: str) -> int:
    """A transaction id typed by a person: `73522` or its correlation id `tx-73522`."""
    raw = text.strip()
    digits = raw.removeprefix("tx-")
    if not digits.isdigit() or not digits.isascii():
        raise TraceError(
            f"{raw!r} is not a transaction id: type a whole number such as 73522 (or tx-73522)."
        )
    return int(digits)


def order_hops(hops: Iterable[Hop]) -> list[Hop]:
    """Hops in causal order: each right after the hop that caused it (depth first), the hops
    one hop caused (and hops with no cause found) in time order.

    A cause is the hop whose message id is the hop's causation id. Ids can repeat (a
    transaction scored twice gives two predictions `pred-<id>`), so among several the cause
    is the latest one not after the hop, else the nearest in time.
    """
    items = sorted(hops, key=_when)
    by_id: dict[str, list[int]] = {}
    for i, hop in enumerate(items):
        by_id.setdefault(hop.message_id, []).append(i)
    children: dict[int | None, list[int]] = {}
    for i, hop in enumerate(items):
        candidates = [c for c in by_id.get(hop.causation_id, []) if c != i]
        parent = min(candidates, key=lambda c: _distance(items[c], hop)) if candidates else None
        children.setdefault(parent, []).append(i)
    out: list[Hop] = []
    seen: set[int] = set()

    def walk(i: int) -> None:
        if i in seen:  # a cycle of ids (bad headers): each hop once
            return
        seen.add(i)
        out.append(items[i])
        for child in children.get(i, []):
            walk(child)

    for root in children.get(None, []):
        walk(root)
    for i in range(len(items)):  # only hops in a cycle are left: keep them, in time order
        walk(i)
    return out


def _when(hop: Hop) -> tuple[int, int, str]:
    return hop.time_ms, KINDS.index(hop.kind), hop.message_id


def _distance(cause: Hop, hop: Hop) -> tuple[bool, int]:
    """Prefer causes written before the hop, then the nearest in time."""
    return cause.time_ms > hop.time_ms, abs(hop.time_ms - cause.time_ms)


def hop_table(hops: Sequence[Hop]) -> pd.DataFrame:
    """The hops as rows in the order given, with each hop's delay after its cause's."""
    by_id: dict[str, list[Hop]] = {}
    for hop in hops:
        by_id.setdefault(hop.message_id, []).append(hop)
    rows = []
    for step, hop in enumerate(hops, start=1):
        causes = by_id.get(hop.causation_id, [])
        cause = min(causes, key=lambda c: _distance(c, hop)) if causes else None
        rows.append(
            {
                "step": step,
                "hop": hop.kind,
                "service": hop.service,
                "topic": hop.topic,
                "partition": hop.partition,
                "offset": hop.offset,
                "time": pd.Timestamp(hop.time_ms, unit="ms", tz="UTC"),
                "after (ms)": None if cause is None else hop.time_ms - cause.time_ms,
                "type": hop.name,
                "what": hop.what,
                "message id": hop.message_id,
                "caused by": hop.causation_id,
            }
        )
    frame = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    frame["offset"] = frame["offset"].astype("Int64")
    frame["after (ms)"] = frame["after (ms)"].astype("Int64")
    return frame


def missing(hops: Sequence[Hop]) -> list[str]:
    """Sentences for the hops the path calls for but that were not found: a command for each
    event, a prediction for each command, a notification for each blocking or alert event."""
    ids = {(hop.kind, hop.message_id) for hop in hops}
    causes = {(hop.kind, hop.causation_id) for hop in hops}
    out = []
    for hop in hops:
        if hop.kind == "event" and ("command", hop.causation_id) not in ids:
            out.append(
                f"No command {hop.causation_id} found on {COMMANDS} for event {hop.message_id}."
            )
        if hop.kind == "command" and ("prediction", hop.causation_id) not in ids:
            out.append(f"No prediction found on {PREDICTIONS} for command {hop.message_id}.")
        if (
            hop.kind == "event"
            and hop.name in NOTIFYING
            and ("notification", hop.message_id) not in causes
        ):
            out.append(
                f"No notification found on {NOTIFICATIONS} for {hop.name} {hop.message_id} "
                "(is the notification service running?)."
            )
    return out


def recent_transactions(read_model: ReadModel, limit: int = 10) -> pd.DataFrame:
    """The newest alerts and blocks of the read model, one row per transaction, newest first:
    transactions worth tracing. Columns: transaction_id, type, card_id, occurred_at."""
    frames = [read_model.alerts(limit)]
    for card in read_model.blocked_cards().tail(limit)["card_id"]:
        history = read_model.card_history(int(card))
        frames.append(history[history["type"] == "CardBlocked"].tail(1))
    found = pd.concat([f for f in frames if not f.empty] or [frames[0]], ignore_index=True)
    found = found[found["correlation_id"].fillna("").str.fullmatch(r"tx-\d+")]
    found = found.sort_values("occurred_at", ascending=False, kind="mergesort")
    found = found.drop_duplicates("correlation_id").head(limit)
    out = found[["transaction_id", "type", "card_id", "occurred_at"]].copy()
    out["transaction_id"] = found["correlation_id"].str.removeprefix("tx-").astype(int)
    return out.reset_index(drop=True)


# --- reading Kafka ------------------------------------------------------------------------


@dataclass
class _Span:
    """Records of one partition to read: from a time (or an offset) up to a time (or an
    offset), keeping those `match` accepts, until `expected` of them are found."""

    kind: str
    partition: int
    match: Callable[[Message], bool]
    expected: int
    start_ms: int | None = None
    start_offset: int | None = None
    stop_ms: int | None = None
    stop_offset: int | None = None
    found: list[Message] = field(default_factory=list)
    read: int = 0
    done: bool = False

    @property
    def topic(self) -> str:
        return TOPIC[self.kind]

    def take(self, msg: Message, max_records: int) -> None:
        """Look at one record of the partition; `done` once the span is read."""
        if self.stop_offset is not None and msg.offset() > self.stop_offset:
            self.done = True
            return
        stamp = msg.timestamp()[1]
        if self.stop_ms is not None and stamp > self.stop_ms:
            self.done = True
            return
        self.read += 1
        if self.match(msg):
            self.found.append(msg)
        if len(self.found) >= self.expected or self.read >= max_records:
            self.done = True


def _clusters(times: Iterable[int], gap_ms: int) -> list[tuple[int, int]]:
    """Sorted times grouped into (first, last) runs whose neighbours are within `gap_ms`."""
    out: list[tuple[int, int]] = []
    for t in sorted(set(times)):
        if out and t - out[-1][1] <= gap_ms:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


class Tracer:
    """Reads the hops of transactions: one consumer (assigns partitions, never joins a group
    or commits) and the decoders, kept between traces; one trace at a time."""

    def __init__(
        self,
        settings: Settings,
        horizon_s: float = HORIZON_S,
        max_records: int = MAX_RECORDS,
        timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.horizon_ms = int(horizon_s * 1000)
        self.max_records = max_records
        self.timeout = timeout
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None
        self._predictions: WireDeserializer | None = None
        self._commands: WireDeserializer | None = None

    def close(self) -> None:
        """Close the tracer's consumer."""
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def trace(self, transaction_id: int, read_model: ReadModel) -> list[Hop]:
        """The hops of `transaction_id` found, in causal order (see `trace_transaction`)."""
        correlation = transaction_correlation(transaction_id)
        events = read_model.trace(correlation)
        if events.empty:
            return []
        events = events.tail(MAX_EVENTS)
        with self._lock:
            consumer = self._open()
            deadline = time.monotonic() + self.timeout
            counts = self._partition_counts(consumer)
            spans = self._spans(transaction_id, correlation, events, counts)
            self._read(consumer, spans, deadline)
        return order_hops(self._hops(transaction_id, events, spans))

    # --- what to read ---------------------------------------------------------------------

    def _spans(
        self, tx: int, correlation: str, events: pd.DataFrame, counts: dict[str, int]
    ) -> list[_Span]:
        spans: list[_Span] = []
        if EVENTS in counts:
            for partition, rows in events.groupby("partition"):
                offsets = {int(o) for o in rows["offset"]}
                spans.append(
                    _Span(
                        "event",
                        int(partition),
                        lambda m, wanted=offsets: m.offset() in wanted,
                        len(offsets),
                        start_offset=min(offsets),
                        stop_offset=max(offsets),
                    )
                )
        times = [millis(t) for t in events["occurred_at"]]
        tx_key = str(tx).encode()
        for first, last in _clusters(times, self.horizon_ms):
            inside = events[[first <= t <= last for t in times]]
            start, stop = first - BEFORE_MS, last + self.horizon_ms
            if PREDICTIONS in counts:
                spans.append(
                    _Span(
                        "prediction",
                        partition_for(tx_key, counts[PREDICTIONS]),
                        lambda m: m.key() == tx_key,
                        inside["occurred_at"].nunique(),
                        start_ms=start,
                        stop_ms=stop,
                    )
                )
            for card, rows in inside.groupby("card_id"):
                key = card_key(int(card))
                if COMMANDS in counts:
                    spans.append(
                        _Span(
                            "command",
                            partition_for(key, counts[COMMANDS]),
                            lambda m: _correlation(m) == correlation,
                            rows["command_id"].nunique(),
                            start_ms=start,
                            stop_ms=stop,
                        )
                    )
                notifying = set(rows.loc[rows["type"].isin(list(NOTIFYING)), "event_id"])
                if notifying and NOTIFICATIONS in counts:
                    spans.append(
                        _Span(
                            "notification",
                            partition_for(key, counts[NOTIFICATIONS]),
                            lambda m, causes=notifying: _caused_by(m, correlation, causes),
                            len(notifying),
                            start_ms=start,
                            stop_ms=stop,
                        )
                    )
        return spans

    # --- reading ----------------------------------------------------------------------------

    def _open(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                self.settings.client_config(
                    group_id=f"rtml-trace-{uuid.uuid4().hex[:8]}",
                    enable_auto_commit=False,
                    enable_partition_eof=True,
                    isolation_level="read_committed",
                    socket_timeout_ms=int(min(self.timeout, 10) * 1000),
                    fetch_wait_max_ms=100,
                    logger=QUIET,
                )
            )
        return self._consumer

    def _partition_counts(self, consumer: Consumer) -> dict[str, int]:
        """Topic -> partition count, for the topics of the path that exist."""
        try:
            topics = consumer.list_topics(timeout=min(self.timeout, 5)).topics
        except KafkaException as exc:
            raise TraceError(no_broker(self.settings)) from exc
        return {
            name: len(topics[name].partitions)
            for name in TOPIC.values()
            if name in topics and topics[name].error is None
        }

    def _read(self, consumer: Consumer, spans: list[_Span], deadline: float) -> None:
        """Read every span (one span per partition at a time: a consumer has one position
        per partition) until each is done or the deadline passes."""
        rounds: list[dict[tuple[str, int], _Span]] = []
        for span in spans:
            for batch in rounds:
                if (span.topic, span.partition) not in batch:
                    batch[(span.topic, span.partition)] = span
                    break
            else:
                rounds.append({(span.topic, span.partition): span})
        for batch in rounds:
            self._read_round(consumer, batch, deadline)

    def _read_round(
        self, consumer: Consumer, batch: dict[tuple[str, int], _Span], deadline: float
    ) -> None:
        starts = self._starts(consumer, list(batch.values()), deadline)
        assigned = [
            TopicPartition(s.topic, s.partition, starts[k])
            for k, s in batch.items()
            if starts.get(k, -1) >= 0
        ]
        for key, span in batch.items():
            if starts.get(key, -1) < 0:
                span.done = True  # no record that late: nothing to read
        if not assigned:
            return
        consumer.assign(assigned)
        try:
            while not all(s.done for s in batch.values()) and time.monotonic() < deadline:
                for msg in consumer.consume(500, timeout=0.2):
                    span = batch.get((msg.topic(), msg.partition()))
                    if span is None or span.done:
                        continue
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            span.done = True
                        continue
                    span.take(msg, self.max_records)
        finally:
            consumer.unassign()

    def _starts(
        self, consumer: Consumer, spans: list[_Span], deadline: float
    ) -> dict[tuple[str, int], int]:
        """The first offset of each span: its own, or Kafka's time index answer (-1: none)."""
        out = {(s.topic, s.partition): s.start_offset for s in spans if s.start_offset is not None}
        timed = [s for s in spans if s.start_offset is None]
        if timed:
            wait = max(1.0, min(10.0, deadline - time.monotonic()))
            try:
                found = consumer.offsets_for_times(
                    [TopicPartition(s.topic, s.partition, s.start_ms or 0) for s in timed],
                    timeout=wait,
                )
            except KafkaException as exc:
                names = ", ".join(sorted({s.topic for s in timed}))
                raise TraceError(
                    f"Could not look up offsets by time on {names} ({exc.args[0].str()}): is "
                    "the cluster up (`rtml cluster status`)?"
                ) from exc
            out.update({(tp.topic, tp.partition): tp.offset for tp in found})
        return out

    # --- hops -------------------------------------------------------------------------------

    def _hops(self, tx: int, events: pd.DataFrame, spans: list[_Span]) -> list[Hop]:
        found: dict[str, dict[tuple[int, int], Message]] = {kind: {} for kind in KINDS}
        for span in spans:
            for msg in span.found:
                found[span.kind][(msg.partition(), msg.offset())] = msg
        hops = [self._event(row, found["event"]) for row in events.itertuples(index=False)]
        anchors = {millis(t) for t in events["occurred_at"]}
        predictions = [self._prediction(tx, m) for m in found["prediction"].values()]
        # The predictions that caused the commands carry their time; others of the same
        # transaction (scored again, and approved) are left out when those are found.
        causing = [h for h, t in predictions if t in anchors]
        hops += causing or [h for h, _ in predictions]
        hops += [self._command(m) for m in found["command"].values()]
        hops += [_notification(m) for m in found["notification"].values()]
        return hops

    def _event(self, row: Any, read: dict[tuple[int, int], Message]) -> Hop:
        msg = read.get((int(row.partition), int(row.offset)))
        return Hop(
            "event",
            EVENTS,
            int(row.partition),
            int(row.offset) if msg is not None else None,
            msg.timestamp()[1] if msg is not None else millis(row.occurred_at),
            row.event_id,
            row.causation_id or row.command_id,
            row.type,
            row.reason,
        )

    def _prediction(self, tx: int, msg: Message) -> tuple[Hop, int | None]:
        if self._predictions is None:
            self._predictions = WireDeserializer(registry_client(self.settings), _PREDICTION)
        try:
            value = self._predictions(msg.value())
        except SchemaError as exc:
            name, what, predicted = "?", f"(does not decode: {exc})", None
        else:
            name = value["decision"]
            what = f"score {value['score']:.3f} by model {value['model_version']}"
            predicted = millis(value["predicted_time"])
        hop = Hop(
            "prediction",
            PREDICTIONS,
            msg.partition(),
            msg.offset(),
            msg.timestamp()[1],
            f"pred-{tx}",
            "",
            name,
            what,
        )
        return hop, predicted

    def _command(self, msg: Message) -> Hop:
        if self._commands is None:
            self._commands = WireDeserializer.for_topic(self.settings, COMMANDS)
        trace = read_trace(msg.headers())
        try:
            value = self._commands(msg.value())
        except SchemaError as exc:
            name, what, command_id = "?", f"(does not decode: {exc})", ""
        else:
            name, what, command_id = value["type"], value["reason"], value["command_id"]
        return Hop(
            "command",
            COMMANDS,
            msg.partition(),
            msg.offset(),
            msg.timestamp()[1],
            trace.message_id if trace else command_id,
            trace.causation_id if trace else "",
            name,
            what,
        )


def _notification(msg: Message) -> Hop:
    trace = read_trace(msg.headers())
    try:
        value = json.loads(msg.value() or b"")
        name, what = str(value.get("kind", "?")), str(value.get("text", ""))
    except (ValueError, AttributeError):
        name, what = "?", "(not a JSON notification)"
    return Hop(
        "notification",
        NOTIFICATIONS,
        msg.partition(),
        msg.offset(),
        msg.timestamp()[1],
        trace.message_id if trace else "",
        trace.causation_id if trace else "",
        name,
        what,
    )


def _correlation(msg: Message) -> str | None:
    trace = read_trace(msg.headers())
    return trace.correlation_id if trace else None


def _caused_by(msg: Message, correlation: str, causes: set[str]) -> bool:
    trace = read_trace(msg.headers())
    return (
        trace is not None and trace.correlation_id == correlation and trace.causation_id in causes
    )


def trace_transaction(
    settings: Settings,
    transaction_id: int,
    read_model: ReadModel,
    tracer: Tracer | None = None,
) -> list[Hop]:
    """The path of one transaction through the services, in causal order: its prediction,
    the command the decision service sent, the card service's event(s), the notification.

    Starts from the events the read model holds for it (none: an approved transaction, or
    one the projection has not read yet, has no path) and reads only the partitions and
    time spans those events point to. `tracer` keeps a consumer between calls; without it
    one is opened and closed here.
    """
    own = tracer is None
    tracer = tracer or Tracer(settings)
    try:
        return tracer.trace(transaction_id, read_model)
    finally:
        if own:
            tracer.close()
