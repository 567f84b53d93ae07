"""Online evaluation: predictions joined with their delayed labels, windowed metrics, drift.

A prediction is made within milliseconds; whether the transaction was a fraud is known days
later, when a chargeback (the `labels` topic) confirms or clears it. So the model's live
quality is measured by joining each prediction with its label by `transaction_id`, then
computing precision, recall and average precision over sliding windows of the
transactions' event time.

How the join treats order and lateness (see `LabelJoin`):

- either side may come first: a label read before its prediction (a replay, or a service
  that lags) waits for it, as a prediction waits for its label;
- state is bounded by time: a prediction waits until the labels have reached `horizon`
  past its transaction's time, then counts as `expired_predictions` (its label was later
  than the horizon, or never came); a label waits until the predictions have reached
  `horizon` past its transaction's time, then counts as `orphan_labels`. A label that comes
  after its prediction expired is therefore an orphan: both are counted, none dropped
  silently. Raise the horizon to evaluate later labels;
- state is also bounded by size (`max_pending` per side, oldest out first, counted as
  `evicted`), so a stream whose labels stop cannot fill memory;
- a second prediction or label for a transaction (at-least-once delivery after a restart)
  is counted as a duplicate and ignored: the first prediction is the one acted on.

Drift is the population stability index (PSI) of a distribution against a reference:
PSI = sum over bins of (current% - reference%) * ln(current% / reference%), with bins at
the reference's deciles. The usual reading: below 0.1 stable, 0.1 to 0.25 a moderate shift
worth watching, 0.25 or more a major shift (retrain or investigate). Scores come with the
predictions; features are on the `features` topic, so `drift_table` takes any two frames
and `read_features_between` fetches a window of them.

The logic is pure (functions on arrays and frames, and the `LabelJoin` and
`OnlineEvaluator` state machines); `follow_evaluation` is the thin Kafka reader around it.
"""

from __future__ import annotations

import heapq
import math
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, KafkaException, TopicPartition

from rtml.clients import QUIET, partitions_of
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.observe import no_broker
from rtml.observe.latency import millis
from rtml.schemas import SchemaError, projection, registry_client
from rtml.schemas.wire import WireDeserializer

DAY_MS = 86_400_000
FLAGGED = frozenset({"REVIEW", "DECLINE"})
STABLE = 0.1  # PSI below: the distribution has not moved
MAJOR = 0.25  # PSI at or above: a major shift
# The simulator publishes labels 7 days after the transaction; one more day of slack.
DEFAULT_HORIZON_MS = 8 * DAY_MS
_PSI_FLOOR = 1e-4  # a bin empty on one side would make ln() infinite
_NEVER = -(2**62)


class EvaluationError(RtmlError):
    """Online evaluation was set up wrongly, or its topics cannot be read."""


# ---------------------------------------------------------------- metrics (pure)


def average_precision(fraud: np.ndarray, score: np.ndarray) -> float:
    """Average precision: sum over thresholds of (R_k - R_{k-1}) * P_k, as scikit-learn does.

    Tied scores form one threshold. NaN when there is no fraud (recall is undefined).
    Unscored predictions (score NaN: the service sent invalid input to REVIEW unscored)
    have no rank, so they are left out here; precision and recall still count them.
    """
    fraud = np.asarray(fraud, dtype=bool)
    score = np.asarray(score, dtype=float)
    scored = ~np.isnan(score)
    fraud, score = fraud[scored], score[scored]
    positives = int(fraud.sum())
    if positives == 0:
        return math.nan
    order = np.argsort(-score, kind="mergesort")
    score, fraud = score[order], fraud[order]
    tp = np.cumsum(fraud)
    # The last row of each run of equal scores is where that threshold's counts are complete.
    last = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    tp = tp[last]
    precision = tp / (last + 1)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class Metrics:
    """Quality of the decisions over one set of labelled predictions."""

    n: int
    frauds: int
    flagged: int
    true_positives: int
    precision: float  # of the flagged, how many were fraud (NaN when none was flagged)
    recall: float  # of the frauds, how many were flagged (NaN when there was none)
    average_precision: float  # of the scores, threshold-free (NaN when there was no fraud)


def classification_metrics(fraud: np.ndarray, score: np.ndarray, flagged: np.ndarray) -> Metrics:
    """Precision and recall at the model's decision (flagged = REVIEW or DECLINE), and AP."""
    fraud = np.asarray(fraud, dtype=bool)
    flagged = np.asarray(flagged, dtype=bool)
    tp = int(np.sum(fraud & flagged))
    n_flagged, n_fraud = int(flagged.sum()), int(fraud.sum())
    return Metrics(
        n=int(fraud.size),
        frauds=n_fraud,
        flagged=n_flagged,
        true_positives=tp,
        precision=tp / n_flagged if n_flagged else math.nan,
        recall=tp / n_fraud if n_fraud else math.nan,
        average_precision=average_precision(fraud, score),
    )


def sliding_windows(
    joined: pd.DataFrame, window_ms: int, step_ms: int, time_column: str = "tx_time"
) -> pd.DataFrame:
    """Metrics over windows of event time [end - window, end), with ends every `step_ms`.

    `joined` has columns `time_column` (ms), `score`, `flagged` and `fraud`. Window ends are
    multiples of `step_ms`, from the first that covers a row to the first after the last row.
    """
    if window_ms <= 0 or step_ms <= 0:
        raise EvaluationError(
            f"Windows need a positive length and step, not {window_ms} and {step_ms} ms."
        )
    columns = ["window_start", "window_end", *Metrics.__dataclass_fields__]
    if joined.empty:
        return pd.DataFrame(columns=columns)
    frame = joined.sort_values(time_column, kind="mergesort")
    times = frame[time_column].to_numpy(dtype=np.int64)
    fraud = frame["fraud"].to_numpy(dtype=bool)
    score = frame["score"].to_numpy(dtype=float)
    flagged = frame["flagged"].to_numpy(dtype=bool)
    first_end = (times[0] // step_ms + 1) * step_ms
    last_end = (times[-1] // step_ms + 1) * step_ms
    rows = []
    for end in range(first_end, last_end + step_ms, step_ms):
        lo, hi = np.searchsorted(times, [end - window_ms, end], side="left")
        if hi > lo:
            m = classification_metrics(fraud[lo:hi], score[lo:hi], flagged[lo:hi])
            rows.append((end - window_ms, end, *m.__dict__.values()))
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- drift (pure)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `current` against `reference`.

    Bins are the reference's quantiles (deciles by default; fewer when values repeat, as for
    a flag or a count), plus one bin for missing values (NaN). Proportions are floored at
    1e-4 so an empty bin gives a large but finite term. NaN when either side is empty.
    """
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    if reference.size == 0 or current.size == 0:
        return math.nan
    known = reference[~np.isnan(reference)]
    inner = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1])) if known.size else []

    def shares(values: np.ndarray) -> np.ndarray:
        missing = np.isnan(values)
        counts = np.bincount(
            np.searchsorted(inner, values[~missing], side="right"), minlength=len(inner) + 1
        )
        return np.maximum(np.r_[counts, missing.sum()] / values.size, _PSI_FLOOR)

    ref, cur = shares(reference), shares(current)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def drift_level(value: float) -> str:
    """'stable' below 0.1, 'moderate' below 0.25, 'major' from 0.25 ('unknown' for NaN)."""
    if math.isnan(value):
        return "unknown"
    if value < STABLE:
        return "stable"
    return "moderate" if value < MAJOR else "major"


def drift_table(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """PSI and its level for each column both frames have (or `columns`), worst first."""
    names = [c for c in reference.columns if c in current.columns] if columns is None else columns
    rows = []
    for name in names:
        value = psi(
            pd.to_numeric(reference[name]).to_numpy(dtype=float),
            pd.to_numeric(current[name]).to_numpy(dtype=float),
        )
        rows.append((name, value, drift_level(value)))
    table = pd.DataFrame(rows, columns=["column", "psi", "level"]).set_index("column")
    return table.sort_values("psi", ascending=False, na_position="last")


# ---------------------------------------------------------------- the join (pure, stateful)


@dataclass(frozen=True)
class Joined:
    """A prediction with its label."""

    transaction_id: int
    tx_time: int
    score: float
    flagged: bool
    fraud: bool
    model_version: str


@dataclass
class JoinCounts:
    """What happened to every prediction and label the join saw."""

    predictions: int = 0
    labels: int = 0
    joined: int = 0
    pending_predictions: int = 0
    pending_labels: int = 0
    expired_predictions: int = 0  # no label within the horizon
    orphan_labels: int = 0  # no prediction within the horizon
    evicted: int = 0  # pushed out by max_pending before their horizon
    duplicate_predictions: int = 0
    duplicate_labels: int = 0


@dataclass
class _Side:
    """The records of one side waiting for the other, and a heap of them by event time."""

    waiting: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    heap: list[tuple[int, int]] = field(default_factory=list)
    # Progress (ms) of each partition of the side's topic; their minimum expires the other
    # side. A partition not heard from yet is at the start of time.
    clocks: list[int] = field(default_factory=lambda: [_NEVER])

    def advance(self, partition: int, t: int) -> None:
        if partition >= len(self.clocks):
            self.clocks.extend([_NEVER] * (partition + 1 - len(self.clocks)))
        self.clocks[partition] = max(self.clocks[partition], t)

    @property
    def clock(self) -> int:
        return min(self.clocks)

    def push(self, tid: int, tx_time: int, item: tuple[Any, ...]) -> None:
        self.waiting[tid] = item
        heapq.heappush(self.heap, (tx_time, tid))

    def pop_older(self, limit: int) -> int:
        """Remove the records with event time before `limit`; return how many there were."""
        removed = 0
        while self.heap and self.heap[0][0] < limit:
            _t, tid = heapq.heappop(self.heap)
            if self.waiting.pop(tid, None) is not None:
                removed += 1
        return removed

    def pop_oldest(self) -> None:
        while self.heap:
            _t, tid = heapq.heappop(self.heap)
            if self.waiting.pop(tid, None) is not None:
                return

    def compact(self) -> None:
        """Drop heap entries of records already joined, once they outnumber the waiting."""
        if len(self.heap) > 2 * len(self.waiting) + 1024:
            self.heap = [(item[0], tid) for tid, item in self.waiting.items()]
            heapq.heapify(self.heap)


class LabelJoin:
    """Joins predictions and labels by transaction id, in either order, with bounded state.

    A prediction waits until the label clock passes its transaction time + `horizon_ms`; a
    label waits until the prediction clock passes its transaction time + `horizon_ms`. The
    label clock is a watermark: the latest `label_time` seen in each labels partition, and
    the minimum of those; the prediction clock likewise, with transaction times. So each
    side's clock advances only with its own stream, and only as far as its slowest
    partition: reading one topic (or one partition) far ahead of the others, as a replay
    read from the start does, expires nothing that could still be matched. A partition
    that never gets a record holds its clock back; `max_pending` still bounds the state.
    Tell the join how many partitions each topic has with `expect_partitions`.
    """

    def __init__(
        self,
        horizon_ms: int = DEFAULT_HORIZON_MS,
        max_pending: int = 500_000,
        remember: int = 100_000,
    ) -> None:
        if horizon_ms <= 0 or max_pending < 1:
            raise EvaluationError(
                f"The join needs a positive horizon and max_pending, not {horizon_ms} ms and "
                f"{max_pending}."
            )
        self.horizon_ms = horizon_ms
        self.max_pending = max_pending
        self.remember = remember
        self.counts = JoinCounts()
        self._predictions = _Side()
        self._labels = _Side()
        self._done: dict[int, None] = {}  # recently joined ids, to spot duplicates

    def expect_partitions(self, predictions: int, labels: int) -> None:
        """Hold each clock back until every partition of its topic has been heard from."""
        self._predictions.advance(predictions - 1, _NEVER)
        self._labels.advance(labels - 1, _NEVER)

    def add_prediction(
        self,
        tid: int,
        tx_time: int,
        score: float,
        flagged: bool,
        model_version: str,
        partition: int = 0,
    ) -> Joined | None:
        """Take one prediction (from `partition`); return it joined if its label was waiting."""
        self.counts.predictions += 1
        self._predictions.advance(partition, tx_time)
        if tid in self._done or tid in self._predictions.waiting:
            self.counts.duplicate_predictions += 1
            return None
        label = self._labels.waiting.pop(tid, None)
        joined = None
        if label is not None:
            joined = Joined(tid, tx_time, score, flagged, label[1], model_version)
            self._finish(tid)
        else:
            self._predictions.push(tid, tx_time, (tx_time, score, flagged, model_version))
            self._bound(self._predictions)
        self._expire()
        return joined

    def add_label(
        self, tid: int, tx_time: int, label_time: int, fraud: bool, partition: int = 0
    ) -> Joined | None:
        """Take one label (from `partition`); return its prediction joined if that waited."""
        self.counts.labels += 1
        self._labels.advance(partition, label_time)
        if tid in self._done or tid in self._labels.waiting:
            self.counts.duplicate_labels += 1
            return None
        prediction = self._predictions.waiting.pop(tid, None)
        joined = None
        if prediction is not None:
            p_time, score, flagged, version = prediction
            joined = Joined(tid, p_time, score, flagged, fraud, version)
            self._finish(tid)
        else:
            self._labels.push(tid, tx_time, (tx_time, fraud))
            self._bound(self._labels)
        self._expire()
        return joined

    def _finish(self, tid: int) -> None:
        self.counts.joined += 1
        self._done[tid] = None
        if len(self._done) > self.remember:
            del self._done[next(iter(self._done))]

    def _bound(self, side: _Side) -> None:
        if len(side.waiting) > self.max_pending:
            side.pop_oldest()
            self.counts.evicted += 1

    def _expire(self) -> None:
        self.counts.expired_predictions += self._predictions.pop_older(
            self._labels.clock - self.horizon_ms
        )
        self.counts.orphan_labels += self._labels.pop_older(
            self._predictions.clock - self.horizon_ms
        )
        self._predictions.compact()
        self._labels.compact()
        self.counts.pending_predictions = len(self._predictions.waiting)
        self.counts.pending_labels = len(self._labels.waiting)


# ---------------------------------------------------------------- the evaluator (pure)


@dataclass(frozen=True)
class Evaluation:
    """The current window's metrics, its score drift, and the join's counts."""

    window_start: int | None
    window_end: int | None
    metrics: Metrics
    score_psi: float
    counts: JoinCounts

    @property
    def score_drift(self) -> str:
        """The drift level of the scores' PSI (stable, moderate, major)."""
        return drift_level(self.score_psi)


class OnlineEvaluator:
    """Predictions and labels in, windowed metrics and score drift out; memory bounded.

    Joined rows, and the scores of every prediction (labelled or not, for the drift
    signal), are kept for `keep_ms` of event time behind the newest (default: one window)
    and at most `max_rows` of each; past that the oldest half goes, counted in
    `dropped_rows`. The drift reference is `reference_scores` when given (say, the model's
    scores on its test set), else the scores of the first `window_ms` of event time seen
    (at most `max_reference` of them).
    """

    def __init__(
        self,
        window_ms: int = DAY_MS,
        keep_ms: int | None = None,
        horizon_ms: int = DEFAULT_HORIZON_MS,
        max_pending: int = 500_000,
        reference_scores: Sequence[float] | np.ndarray | None = None,
        max_rows: int = 1_000_000,
        max_reference: int = 100_000,
    ) -> None:
        keep_ms = window_ms if keep_ms is None else keep_ms
        if not 0 < window_ms <= keep_ms:
            raise EvaluationError(
                f"The window ({window_ms} ms) must be positive and at most keep_ms ({keep_ms})."
            )
        self.window_ms = window_ms
        self.keep_ms = keep_ms
        self.max_rows = max_rows
        self.max_reference = max_reference
        self.dropped_rows = 0
        self.join = LabelJoin(horizon_ms, max_pending)
        self._rows: list[Joined] = []
        self._scores: list[tuple[int, float]] = []
        self._reference: np.ndarray | None = (
            None if reference_scores is None else np.asarray(reference_scores, dtype=float)
        )
        self._reference_scores: list[float] = []
        self.first_time: int | None = None
        self._newest = -(2**62)
        self._newest_score = -(2**62)
        self.undecodable = 0  # records of either topic that did not decode: counted, skipped

    def add_prediction(self, record: Mapping[str, Any], partition: int = 0) -> None:
        """A decoded `predictions` record (timestamps as ms or datetimes) and its partition."""
        tx_time = millis(record["tx_datetime"])
        score = float(record["score"])
        duplicates = self.join.counts.duplicate_predictions
        joined = self.join.add_prediction(
            int(record["transaction_id"]),
            tx_time,
            score,
            record["decision"] in FLAGGED,
            record["model_version"],
            partition,
        )
        if self.join.counts.duplicate_predictions == duplicates:
            self._score(tx_time, score)
        self._keep(joined)

    def add_label(self, record: Mapping[str, Any], partition: int = 0) -> None:
        """A decoded `labels` record and its partition."""
        joined = self.join.add_label(
            int(record["transaction_id"]),
            millis(record["tx_datetime"]),
            millis(record["label_time"]),
            bool(record["tx_fraud"]),
            partition,
        )
        self._keep(joined)

    def _score(self, tx_time: int, score: float) -> None:
        if self.first_time is None:
            self.first_time = tx_time
        if self._reference is None:
            if tx_time < self.first_time + self.window_ms:
                if len(self._reference_scores) < self.max_reference:
                    self._reference_scores.append(score)
            elif tx_time >= self.first_time + 2 * self.window_ms:
                # Late predictions of the first window are in; freeze the reference.
                self._reference = np.asarray(self._reference_scores)
                self._reference_scores = []
        self._scores.append((tx_time, score))
        self._newest_score = max(self._newest_score, tx_time)
        if len(self._scores) > self.max_rows:
            self._scores = sorted(self._scores)[len(self._scores) // 2 :]
        elif (
            len(self._scores) > 1024 and self._scores[0][0] < self._newest_score - 2 * self.keep_ms
        ):
            cut = self._newest_score - self.keep_ms
            self._scores = [s for s in self._scores if s[0] >= cut]

    def _keep(self, joined: Joined | None) -> None:
        if joined is None:
            return
        self._rows.append(joined)
        self._newest = max(self._newest, joined.tx_time)
        if len(self._rows) > self.max_rows:
            half = len(self._rows) // 2
            self._rows = sorted(self._rows, key=lambda r: r.tx_time)[half:]
            self.dropped_rows += half
        elif len(self._rows) > 1024 and self._rows[0].tx_time < self._newest - 2 * self.keep_ms:
            cut = self._newest - self.keep_ms
            self._rows = [r for r in self._rows if r.tx_time >= cut]

    def joined(self) -> pd.DataFrame:
        """The joined rows kept, in join order."""
        return pd.DataFrame(
            [r.__dict__ for r in self._rows], columns=list(Joined.__dataclass_fields__)
        )

    def reference_scores(self) -> np.ndarray:
        """The scores drift is measured against (the first window's, while it fills)."""
        if self._reference is not None:
            return self._reference
        return np.asarray(self._reference_scores)

    def current(self) -> Evaluation:
        """Metrics of the last `window_ms` of event time up to the newest joined transaction,
        and the PSI of the scores in that window against the reference."""
        if not self._rows:
            empty = classification_metrics(np.array([]), np.array([]), np.array([]))
            return Evaluation(None, None, empty, math.nan, self.join.counts)
        end = self._newest + 1
        start = end - self.window_ms
        rows = [r for r in self._rows if start <= r.tx_time < end]
        metrics = classification_metrics(
            np.array([r.fraud for r in rows]),
            np.array([r.score for r in rows]),
            np.array([r.flagged for r in rows]),
        )
        scores = np.array([s for t, s in self._scores if start <= t < end])
        reference = self.reference_scores() if self._reference is not None else np.array([])
        return Evaluation(start, end, metrics, psi(reference, scores), self.join.counts)


# ---------------------------------------------------------------- Kafka readers (thin)

_PREDICTION_SCHEMA = projection(
    "prediction", ("transaction_id", "score", "decision", "model_version", "tx_datetime")
)


def _consumer(settings: Settings) -> Consumer:
    # Assigned, never subscribed, never committed: the group id only names the client.
    return Consumer(
        settings.client_config(
            group_id=f"rtml-evaluate-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            logger=QUIET,
        )
    )


def _assign_from(
    consumer: Consumer,
    settings: Settings,
    topics: Mapping[str, int | None],
    timeout: float = 10.0,
) -> dict[tuple[str, int], int]:
    """Assign every partition of each topic from its start time (ms; 0 = the beginning,
    None = the end); return the end offset of each partition at this moment."""
    assignment, ends = [], {}  # ends: (topic, partition) -> end offset
    for topic, since_ms in topics.items():
        for p in partitions_of(consumer, settings, topic, EvaluationError, timeout):
            tp = TopicPartition(topic, p)
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            if since_ms is None:
                start = high
            else:
                (found,) = consumer.offsets_for_times(
                    [TopicPartition(topic, p, since_ms)], timeout=timeout
                )
                start = found.offset if found.offset >= 0 else high
            assignment.append(TopicPartition(topic, p, max(start, low)))
            ends[(topic, p)] = high
    consumer.assign(assignment)
    return ends


def follow_evaluation(
    settings: Settings,
    evaluator: OnlineEvaluator,
    since_ms: Mapping[str, int | None] | None = None,
    predictions: str = "predictions",
    labels: str = "labels",
    poll_s: float = 0.5,
) -> Iterator[bool]:
    """Feed `evaluator` from the `predictions` and `labels` topics, yielding after every poll.

    `since_ms` maps a topic to where to start (epoch ms of the record timestamp; 0 for the
    beginning, None for the end); topics not in it start at the beginning. Each yield says
    whether every partition has reached the end it had when reading started, so a caller
    can evaluate the history and stop, or keep following. Records that do not decode are
    counted in `undecodable` and skipped. No group joins, nothing is committed.
    """
    starts = {predictions: 0, labels: 0, **(since_ms or {})}
    decoders = {
        predictions: WireDeserializer(registry_client(settings), _PREDICTION_SCHEMA),
        labels: WireDeserializer.for_topic(settings, "labels"),
    }
    consumer = _consumer(settings)
    try:
        try:
            ends = _assign_from(consumer, settings, starts)
        except KafkaException as exc:
            raise EvaluationError(no_broker(settings)) from exc
        evaluator.join.expect_partitions(
            sum(t == predictions for t, _p in ends), sum(t == labels for t, _p in ends)
        )
        behind = {tp for tp, end in ends.items() if end > 0}
        while True:
            for msg in consumer.consume(5000, timeout=poll_s):
                if msg.error() is not None:
                    continue
                topic = msg.topic()
                try:
                    value = decoders[topic](msg.value())
                except SchemaError:
                    evaluator.undecodable += 1
                    continue
                if topic == predictions:
                    evaluator.add_prediction(value, msg.partition())
                else:
                    evaluator.add_label(value, msg.partition())
            if behind:
                # Positions, not last offsets: transaction markers are never delivered.
                positions = consumer.position([TopicPartition(t, p) for t, p in behind])
                behind = {
                    (tp.topic, tp.partition)
                    for tp in positions
                    if tp.offset < ends[(tp.topic, tp.partition)]
                }
            yield not behind
    finally:
        consumer.close()


def evaluate(
    settings: Settings,
    evaluator: OnlineEvaluator | None = None,
    timeout: float = 300.0,
    predictions: str = "predictions",
    labels: str = "labels",
) -> OnlineEvaluator:
    """Evaluate everything in the predictions and labels topics now, from the beginning."""
    evaluator = evaluator or OnlineEvaluator()
    deadline = time.monotonic() + timeout
    for caught_up in follow_evaluation(settings, evaluator, predictions=predictions, labels=labels):
        if caught_up:
            return evaluator
        if time.monotonic() > deadline:
            raise EvaluationError(
                f"Could not read predictions and labels to their end within {timeout:g} s."
            )
    raise AssertionError("follow_evaluation never stops by itself")


def read_features_between(
    settings: Settings,
    start_ms: int,
    end_ms: int,
    columns: Sequence[str] | None = None,
    max_rows: int = 200_000,
    timeout: float = 60.0,
    topic: str = "features",
) -> pd.DataFrame:
    """The `features` records with a timestamp in [start_ms, end_ms), at most `max_rows`.

    A features record's timestamp is its transaction's, so this is a window of event time
    (replay) or of append time (live). Columns: `columns` (default: every numeric feature).
    Records that do not decode are skipped and counted in the frame's `attrs["undecodable"]`.
    """
    from rtml.model.update import feature_fields

    names = list(feature_fields()) if columns is None else list(columns)
    decode = WireDeserializer.for_topic(settings, "features")
    consumer = _consumer(settings)
    rows: list[tuple[Any, ...]] = []
    undecodable = 0
    try:
        partitions = partitions_of(consumer, settings, topic, EvaluationError)
        # One request per bound: a request names each partition once.
        firsts, lasts = (
            consumer.offsets_for_times(
                [TopicPartition(topic, p, at) for p in partitions], timeout=10
            )
            for at in (start_ms, end_ms)
        )
        assignment, stops = [], {}
        for p, first, last in zip(partitions, firsts, lasts, strict=True):
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10, cached=False
            )
            begin = first.offset if first.offset >= 0 else high
            stop = last.offset if last.offset >= 0 else high
            if stop > begin:
                assignment.append(TopicPartition(topic, p, begin))
                stops[p] = stop
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        while stops and len(rows) < max_rows:
            if time.monotonic() > deadline:
                raise EvaluationError(f"Could not read the features window within {timeout:g} s.")
            for msg in consumer.consume(5000, timeout=0.5):
                p = msg.partition()
                if msg.error() is not None or p not in stops or msg.offset() >= stops[p]:
                    continue
                if start_ms <= msg.timestamp()[1] < end_ms:
                    try:
                        value = decode(msg.value())
                    except SchemaError:
                        undecodable += 1
                        continue
                    rows.append(tuple(value.get(c) for c in names))
                if msg.offset() + 1 >= stops[p]:
                    del stops[p]
            for tp in consumer.position([TopicPartition(topic, p) for p in stops]):
                if tp.offset >= stops[tp.partition]:
                    del stops[tp.partition]
    except KafkaException as exc:
        raise EvaluationError(no_broker(settings)) from exc
    finally:
        consumer.close()
    frame = pd.DataFrame(rows[:max_rows], columns=names, dtype=float)
    frame.attrs["undecodable"] = undecodable
    return frame
