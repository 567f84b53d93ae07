"""The online prediction service: features in, one prediction per transaction out.

A plain confluent-kafka loop, not a stream processor, because the hot path is a batch:

1. block (up to 0.1 s) for one record, then `consume(max_batch - 1, timeout=max_wait)`
   takes whatever arrived with it, up to `max_batch` records in all;
2. decode every record (a record that does not decode goes to `serve.dlq` with origin
   headers), check its values (`rtml.serve.validate`: invalid ones get REVIEW, score NaN,
   and a `rtml.review` header saying why);
3. score the valid rows as one array, one onnxruntime call per batch;
4. produce one prediction per record, keyed by transaction id, stamped with the event
   time, the transaction's append time (the features record's Kafka timestamp, which the
   feature app copies from the transaction), the feature time and the prediction time;
5. hand the batch to the committer (`rtml.serve.commit`), which commits its offsets once
   its records are acknowledged (at-least-once) or in one transaction (exactly-once).

So every record consumed is either a prediction or a DLQ record: `in == predictions + dlq`.

Batching trades latency for throughput. Per-call costs dominate small batches: 500 rows
scored as one onnxruntime call took 0.07 ms here, as 500 calls of one row 4 ms; the loop,
the commit and the delivery round trip are per batch too, so a busy service handles more
records per second with bigger batches. But a record waits for its batch: for the batch
to be taken, then for the whole batch's decoding and scoring before its prediction is
produced. So the loop never waits to *fill* a batch by default (`max_wait` 0): it takes
what has arrived, so at low rates batches are small and latency short, and at high rates
batches grow by themselves (records arrive while the previous batch is scored) up to
`max_batch` (500), which bounds how long one batch holds up the records behind it.
Measured here on a shared, overloaded 2-core machine (load average 12, 15 s per rate,
`python -m bench.serve`): at 1,000 records/s, batches of 7 on average and 13 ms median
latency with `max_wait` 0, against batches of 19 and 37 ms with 5 ms; at 5,000/s, 95 ms
against 204 ms, for the same CPU per record (about 70 µs).

Guarantees (`rtml.serve.commit`): at-least-once by default, exactly-once on request.

Hot swap: a new version on `model-updates` is loaded beside the running one
(`rtml.serve.models`) and takes over at a batch boundary, so each transaction is scored
by exactly one version, named in its prediction. Until a first version exists the service
does not consume at all: features wait in their topic as lag, and nothing is lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from rtml.clients import admin
from rtml.config import Settings
from rtml.contracts import ScoreBatch
from rtml.dlq import dlq_topic, merge_headers, origin_headers
from rtml.impl import exercise
from rtml.model.update import TOPIC as MODEL_TOPIC
from rtml.model.update import Scorer, decode_features
from rtml.observe import no_broker
from rtml.schemas import SchemaError
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.serve import validate
from rtml.serve.commit import AtLeastOnce, Batch, ExactlyOnce
from rtml.serve.errors import ServeError
from rtml.serve.models import STAGE, ModelWatcher
from rtml.serve.status import BatchTimes, ServeStatus, write_status

log = logging.getLogger(__name__)

GROUP = "rtml-serve"
FEATURES = "features"
PREDICTIONS = "predictions"
REVIEW_HEADER = "rtml.review"
KEEP_REFUSALS = 20
IDLE_S = 0.1  # how long an idle loop blocks for the next record
Guarantee = Literal["at-least-once", "exactly-once"]


@dataclass(frozen=True)
class ServeOptions:
    """How the service runs; the defaults suit the lab (see the module docstring)."""

    group: str = GROUP
    instance: int = 0
    guarantee: Guarantee = "at-least-once"
    max_batch: int = 500
    max_wait_ms: float = 0.0
    status_every_s: float = 1.0
    # Put before every topic name (features, predictions, model-updates, serve.dlq), so a
    # chaos scenario or a test runs the service on topics of its own, not the lab's.
    topic_prefix: str = ""

    def topic(self, name: str) -> str:
        """The topic the service uses for catalogue topic `name`."""
        return self.topic_prefix + name


def check_topics(settings: Settings, prefix: str = "") -> None:
    """Fail with one sentence if a topic the service reads or writes is missing."""
    needed = tuple(prefix + t for t in (FEATURES, PREDICTIONS, MODEL_TOPIC, dlq_topic(STAGE)))
    try:
        have = admin(settings, timeout=10).list_topics(timeout=10).topics
    except KafkaException as exc:
        raise ServeError(no_broker(settings)) from exc
    missing = [t for t in needed if t not in have]
    if missing:
        raise ServeError(
            f"The prediction service needs topic(s) {', '.join(missing)}: run `rtml topics apply`."
        )


def score_records(
    scorer: Scorer, records: list[dict[str, Any]], score_batch: ScoreBatch
) -> tuple[np.ndarray, np.ndarray, list[str | None], str | None]:
    """Scores, decisions and review reasons of `records` with one model call, and why the
    model failed on the batch (None if it did not). The service and a sandbox replay
    (`rtml.ops.sandbox`) both score through here, so both decide alike."""
    reasons = validate.problems(records, scorer.features)
    scores = np.full(len(records), np.nan)
    valid = np.fromiter((r is None for r in reasons), dtype=bool, count=len(reasons))
    failure = None
    if valid.any():
        rows = decode_features(records, scorer.features)
        try:
            # One model call for the valid rows: a week 3 exercise (RTML_IMPL=labs).
            scores = score_batch(scorer.score, rows, valid)
        except Exception as exc:  # onnxruntime's errors are untyped; nothing is dropped
            failure = f"the model failed on this batch: {type(exc).__name__}: {exc}"
            log.error("Model %s: %s; the batch gets REVIEW.", scorer.version, failure)
            reasons = [r or failure for r in reasons]
    scores, decisions = validate.outcomes(scorer.update, scores, reasons)
    return scores, decisions, reasons, failure


def prediction(
    record: dict[str, Any], score: float, decision: str, version: str, appended: int, now: int
) -> dict[str, Any]:
    """The prediction record of one features record: what it scored, with its timestamps."""
    return {
        "transaction_id": record["transaction_id"],
        "customer_id": record["customer_id"],
        "terminal_id": record["terminal_id"],
        "score": float(score),
        "decision": decision,
        "model_version": version,
        "tx_datetime": record["tx_datetime"],
        "appended_time": appended,
        "feature_time": record["feature_time"],
        "predicted_time": now,
    }


class PredictionService:
    """One instance of the service in its consumer group; `run` until `stop`."""

    def __init__(self, settings: Settings, options: ServeOptions | None = None) -> None:
        self.settings = settings
        self.options = o = options or ServeOptions()
        if not 1 <= o.max_batch <= 100_000 or not 0 <= o.max_wait_ms <= 10_000:
            raise ServeError(
                f"A batch of {o.max_batch} records with a {o.max_wait_ms:g} ms wait is not "
                "possible: use 1 to 100,000 records and 0 to 10,000 ms."
            )
        self.decode = WireDeserializer.for_topic(settings, FEATURES)
        self.score_batch = exercise("score_batch", settings.impl)
        self.encode = PreparedSerializer.for_topic(settings, PREDICTIONS)
        self.status = ServeStatus(o.group, o.instance, os.getpid(), o.guarantee)
        self.times = BatchTimes()
        self.models = ModelWatcher(settings, o.group, self._refused, topic_prefix=o.topic_prefix)
        self.scorer: Scorer | None = None
        self.consumer: Consumer | None = None
        self.committer: AtLeastOnce | ExactlyOnce | None = None
        self._stop = threading.Event()
        self._status_due = 0.0

    @property
    def exactly_once(self) -> bool:
        """True when each batch is one Kafka transaction."""
        return self.options.guarantee == "exactly-once"

    def stop(self) -> None:
        """Ask `run` to finish its batch, commit and close (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> None:
        """Serve until `stop`; every batch started is finished and committed."""
        o = self.options
        try:
            check_topics(self.settings, o.topic_prefix)
            self.scorer = self.models.start()
            print(
                f"Prediction service instance {o.instance} in group {o.group} ({o.guarantee}, "
                f"batches of up to {o.max_batch} records, {o.max_wait_ms:g} ms wait); "
                "Ctrl-C stops it.",
                flush=True,
            )
            if self.scorer is None and not self._wait_for_model():
                return
            assert self.scorer is not None
            self._use(self.scorer)
            self._open()
            self._loop()
        finally:
            self._close()

    # --- the loop ------------------------------------------------------------------------

    def _wait_for_model(self) -> bool:
        """Poll model-updates until a version loads; False if stopped first."""
        print(
            "Waiting for a model on model-updates: features wait in their topic as lag, "
            "nothing is lost.",
            flush=True,
        )
        self.status.state = "waiting for a model"
        while not self._stop.is_set():
            self.scorer = self.models.poll()
            if self.scorer is not None:
                return True
            self._write_status()
            self._stop.wait(0.2)
        return False

    def _open(self) -> None:
        o = self.options
        self.consumer = Consumer(
            self.settings.client_config(
                group_id=o.group,
                # Static membership: a restarted instance gets its partitions back at once.
                group_instance_id=f"{o.group}-{o.instance}",
                session_timeout_ms=15_000,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                # Only matters when idle: a fetch returns as soon as one record is there.
                fetch_wait_max_ms=10,
            ),
            logger=log,
        )
        kind = ExactlyOnce if self.exactly_once else AtLeastOnce
        self.committer = kind(
            self.settings, self.consumer, f"{o.group}-{o.instance}", self._durable
        )
        self.consumer.subscribe(
            [o.topic(FEATURES)], on_assign=self._assigned, on_revoke=self._revoked
        )
        self.status.state = "serving"

    def _loop(self) -> None:
        assert self.consumer is not None and self.committer is not None
        wait = self.options.max_wait_ms / 1000
        while not self._stop.is_set():
            fresh = self.models.poll()
            if fresh is not None:
                self._use(fresh)
            # Block (briefly, so stop and new models are seen) until one record is there,
            # then take what has arrived with it, waiting at most `max_wait` for more.
            first = self.consumer.poll(IDLE_S)
            if first is not None:
                rest = self.consumer.consume(self.options.max_batch - 1, timeout=wait)
                self._batch([first, *rest])
            self.committer.settle()
            if time.monotonic() >= self._status_due:
                self._write_status()

    def _use(self, scorer: Scorer) -> None:
        """Score with `scorer` from the next batch on."""
        before = self.status.model_version
        self.scorer = scorer
        self.status.model_version = scorer.version
        if before is not None:
            self.status.swaps += 1
        log.info(
            "Model %s version %s now scores%s.",
            scorer.update.name,
            scorer.version,
            f" (was {before})" if before else "",
        )

    def _batch(self, msgs: list[Message]) -> None:
        """Decode, check, score and produce one batch; the committer makes it durable."""
        assert self.committer is not None
        started = time.perf_counter()
        scorer = self.scorer
        assert scorer is not None
        sources: list[Message] = []
        records: list[dict[str, Any]] = []
        dead: list[tuple[Message, SchemaError]] = []
        batch = Batch(first={}, last={})
        for msg in msgs:
            err = msg.error()
            if err is not None:  # an event, not a record: librdkafka retries by itself
                log.warning("Consumer: %s", err.str())
                continue
            where = (msg.topic(), msg.partition())
            batch.first.setdefault(where, msg.offset())
            batch.last[where] = msg.offset() + 1
            try:
                records.append(self.decode(msg.value()))
                sources.append(msg)
            except SchemaError as exc:
                dead.append((msg, exc))
        if not batch.last:
            return
        scores, decisions, reasons = self._score(scorer, records)
        batch.predictions, batch.dlq = len(sources), len(dead)
        batch.reviewed = sum(r is not None for r in reasons)
        batch.left = batch.records
        produce = self.committer.producer.produce
        predictions, dlq = self.options.topic(PREDICTIONS), self.options.topic(dlq_topic(STAGE))
        self.committer.begin()
        now = int(time.time() * 1000)
        for msg, record, score, decision, reason in zip(
            sources, records, scores, decisions, reasons, strict=True
        ):
            produce(
                predictions,
                key=str(record["transaction_id"]).encode(),
                value=self.encode(
                    prediction(record, score, decision, scorer.version, msg.timestamp()[1], now)
                ),
                headers=[(REVIEW_HEADER, reason.encode())] if reason else None,
                on_delivery=batch.delivered,
            )
        for msg, exc in dead:
            produce(
                dlq,
                value=msg.value(),
                key=msg.key(),
                headers=merge_headers(msg.headers(), self._origin(msg, exc)),
                on_delivery=batch.delivered,
            )
        self.times.add((time.perf_counter() - started) * 1000)
        self.committer.end(batch)

    def _score(
        self, scorer: Scorer, records: list[dict[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        scores, decisions, reasons, failure = score_records(scorer, records, self.score_batch)
        if failure is not None:
            self.status.last_error = failure
        return scores, decisions, reasons

    def _origin(self, msg: Message, exc: Exception) -> list[tuple[str, bytes]]:
        return origin_headers(
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            timestamp=msg.timestamp()[1],
            group=self.options.group,
            stage=STAGE,
            error=exc,
        )

    # --- callbacks and status ------------------------------------------------------------

    def _durable(self, batch: Batch) -> None:
        """Count a batch once it is acknowledged (at-least-once) or committed (exactly-once)."""
        self.status.records += batch.records
        self.status.predictions += batch.predictions
        self.status.reviewed += batch.reviewed
        self.status.dlq += batch.dlq
        self.status.batches += 1

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.status.partitions = sorted(tp.partition for tp in partitions)
        log.info(
            "Assigned partitions %s of %s.",
            self.status.partitions,
            self.options.topic(FEATURES),
        )

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self.committer is not None
        self.committer.revoke(partitions)
        self.status.partitions = []

    def _refused(self, version: str, reason: str) -> None:
        self.status.refused = [
            *self.status.refused[-(KEEP_REFUSALS - 1) :],
            {"version": version, "reason": reason},
        ]
        self.status.last_error = f"refused model version {version}: {reason}"

    def _write_status(self) -> None:
        self.status.batch_p99_ms = round(self.times.p99(), 2)
        write_status(self.settings, self.status)
        self._status_due = time.monotonic() + self.options.status_every_s

    def _close(self) -> None:
        try:
            if self.committer is not None:
                self.committer.close()
        finally:
            if self.consumer is not None:
                self.consumer.close()
        self.models.close()
        self.status.state = "stopped"
        self._write_status()
        log.info("Prediction service stopped: %s", self.status.line())
