"""What the control room's Predictions page reads, in steps that never block a refresh.

- `recent_predictions`: the predictions of the last few seconds in one bounded pass (at
  most `max_records`, at most `timeout` seconds), as rows for the score stream and as
  `LatencyHistograms` for the latency percentiles. A page refresh reads it again, so a
  restarted service or a stopped cluster shows at the next refresh.
- `EvaluationFollower`: online precision and recall need each prediction joined with its
  label, which comes later (days in production, 10 s in the lab), so one pass is not
  enough. The follower keeps an `OnlineEvaluator` and its reader open between refreshes
  and reads for at most a budget each time: the join grows while the page stays open.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from rtml.clients import QUIET
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.model.online import Evaluation, OnlineEvaluator, follow_evaluation
from rtml.observe import no_broker
from rtml.observe.latency import LatencyHistograms, millis
from rtml.schemas import SchemaError, projection, registry_client
from rtml.schemas.wire import WireDeserializer

TOPIC = "predictions"
COLUMNS = ["predicted", "transaction_id", "score", "decision", "model_version"]
# The fields the page shows and measures; fastavro resolves the writer's schema into this.
_READER = projection(
    "prediction",
    ("transaction_id", "score", "decision", "model_version", "appended_time", "feature_time"),
)


class PredictionsError(RtmlError):
    """The predictions topic cannot be read: no broker answers, or it does not exist."""


@dataclass
class RecentPredictions:
    """The predictions of the last `seconds`: rows oldest first, and their latency."""

    rows: pd.DataFrame  # COLUMNS; `predicted` is the prediction record's time (UTC)
    latency: LatencyHistograms
    seconds: int
    complete: bool  # False: the span held more than max_records, or the read timed out


def recent_predictions(
    settings: Settings,
    seconds: int = 30,
    max_records: int = 5000,
    timeout: float = 5.0,
    topic: str = TOPIC,
) -> RecentPredictions:
    """The predictions written in the last `seconds` (the newest `max_records` of them).

    Assigns every partition at the first record of the span (no group joins or commits)
    and reads up to the end offsets it found, for at most about `timeout` seconds.
    """
    since_ms = time.time_ns() // 1_000_000 - seconds * 1000
    consumer = Consumer(
        settings.client_config(
            group_id=f"rtml-predictions-view-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            socket_timeout_ms=int(min(timeout, 10) * 1000),
            logger=QUIET,
        )
    )
    deadline = time.monotonic() + timeout
    latency = LatencyHistograms(keep_s=max(1, seconds))
    rows: list[tuple[Any, ...]] = []
    try:
        ranges = _span(settings, consumer, topic, since_ms, max_records, min(timeout, 3))
        complete = sum(end - start for start, end in ranges.values()) <= max_records
        ranges = _newest(ranges, max_records)
        decode = WireDeserializer(registry_client(settings), _READER)
        consumer.assign([TopicPartition(topic, p, start) for p, (start, _end) in ranges.items()])
        pending = {p for p, (start, end) in ranges.items() if end > start}
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                p = msg.partition()
                if msg.error() is not None or p not in pending:
                    continue
                if msg.offset() + 1 >= ranges[p][1]:
                    pending.discard(p)
                try:
                    value = decode(msg.value())
                except SchemaError:
                    latency.undecodable += 1
                    continue
                predicted = msg.timestamp()[1]
                latency.record(
                    millis(value["appended_time"]), millis(value["feature_time"]), predicted
                )
                rows.append(
                    (
                        predicted,
                        value["transaction_id"],
                        value["score"],
                        value["decision"],
                        value["model_version"],
                    )
                )
        complete = complete and not pending
    finally:
        consumer.close()
    frame = pd.DataFrame(rows, columns=COLUMNS).sort_values("predicted", kind="mergesort")
    frame["predicted"] = pd.to_datetime(frame["predicted"], unit="ms", utc=True)
    return RecentPredictions(frame.reset_index(drop=True), latency, seconds, complete)


def _span(
    settings: Settings,
    consumer: Consumer,
    topic: str,
    since_ms: int,
    max_records: int,
    timeout: float,
) -> dict[int, tuple[int, int]]:
    """Partition -> (offset of the first record at or after `since_ms`, end offset)."""
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise PredictionsError(
                f"Topic {topic} does not exist on {settings.bootstrap}: create the catalogue's "
                "topics with `rtml topics apply`."
            )
        partitions = sorted(meta.partitions)
        firsts = consumer.offsets_for_times(
            [TopicPartition(topic, p, since_ms) for p in partitions], timeout=timeout
        )
        ranges = {}
        for p, first in zip(partitions, firsts, strict=True):
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=timeout, cached=False
            )
            # -1: nothing at or after since_ms in this partition.
            ranges[p] = (first.offset if first.offset >= 0 else high, high)
        return ranges
    except KafkaException as exc:
        raise PredictionsError(no_broker(settings)) from exc


def _newest(ranges: dict[int, tuple[int, int]], max_records: int) -> dict[int, tuple[int, int]]:
    """The ranges cut to their newest records, about `max_records` in all (an even share
    of the partitions: keys spread evenly, so their newest records span the same time)."""
    share = max(1, max_records // max(1, len(ranges)))
    return {p: (max(start, end - share), end) for p, (start, end) in ranges.items()}


class EvaluationFollower:
    """An `OnlineEvaluator` fed from `predictions` and `labels` a little per `advance`.

    Starts `since_s` seconds back (by record time) in both topics and measures the last
    `window_ms` of event time. Predictions wait for their labels (`horizon_ms`); a
    prediction replayed from history, whose label was written long before, expires at once.
    """

    def __init__(
        self,
        settings: Settings,
        since_s: int = 600,
        window_ms: int = 600_000,
        horizon_ms: int | None = None,
    ) -> None:
        since_ms = time.time_ns() // 1_000_000 - since_s * 1000
        options = {} if horizon_ms is None else {"horizon_ms": horizon_ms}
        self.evaluator = OnlineEvaluator(window_ms=window_ms, **options)
        self.caught_up = False
        self._follow: Iterator[bool] = follow_evaluation(
            settings, self.evaluator, since_ms={"predictions": since_ms, "labels": since_ms}
        )

    def advance(self, budget_s: float = 1.0) -> Evaluation:
        """Read for at most about `budget_s` (less once caught up); return the evaluation."""
        deadline = time.monotonic() + budget_s
        for caught_up in self._follow:
            self.caught_up = self.caught_up or caught_up
            if caught_up or time.monotonic() >= deadline:
                break
        return self.evaluator.current()

    def close(self) -> None:
        """Close the reader (its consumer); the evaluator keeps what it joined."""
        self._follow.close()
