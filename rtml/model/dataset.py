"""The training set: each transaction's features joined with its fraud label, point in time.

Two paths give the same frame (a test proves it on the live cluster):

- `training_set(sim)` computes the features of a simulated history with the batch
  reference (`rtml.features.batch`), the pandas twin of the streaming app;
- `training_set_from_log(settings)` replays what the streaming app wrote: the `features`
  topic from offset 0 (or from a timestamp) joined with the `labels` topic.

Point in time, twice over. The features are computed from the past only: customer windows
end at the transaction itself, terminal windows end a label delay before it and count only
labels known by then. And a label joins the set only if it had arrived by the training
cutoff: a model trained at time T has not seen the chargebacks of T + 1 day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rtml.config import Settings
from rtml.features.batch import batch_features
from rtml.features.definitions import FEATURE_COLUMNS
from rtml.features.labels import to_millis
from rtml.impl import exercise
from rtml.model import log
from rtml.model.update import ModelError
from rtml.schemas import SchemaError
from rtml.schemas.wire import WireDeserializer
from rtml.simulate import Simulation

# The model's inputs: fields of the features topic, in this order.
INPUTS: tuple[str, ...] = ("tx_amount", *FEATURE_COLUMNS, "terminal_distance")
TARGET = "tx_fraud"


def _dtype(column: str) -> str:
    """The dtype of an input column: flags are bool, counts int64, the rest float64."""
    if column in ("is_weekend", "is_night"):
        return "bool"
    return "int64" if "_nb_tx_" in column else "float64"


# Every column of a training frame (indexed by transaction_id), with its dtype.
COLUMNS: dict[str, str] = {
    "event_time_ms": "int64",
    "customer_id": "int64",
    "terminal_id": "int64",
    **{c: _dtype(c) for c in INPUTS},
    TARGET: "int64",
    "label_time_ms": "int64",
}


def training_set(sim: Simulation, cutoff_ms: int | None = None) -> pd.DataFrame:
    """The labelled feature rows of a simulated history, computed by the batch reference.

    Only transactions whose label was published by `cutoff_ms` (all when None) are rows.
    """
    features = batch_features(sim.transactions, sim.labels, sim.customers, sim.terminals)
    txs = sim.transactions.set_index("transaction_id")
    rows = features.join(txs[["event_time_ms", "customer_id", "terminal_id", "tx_amount"]])
    labels = sim.labels.set_index("transaction_id")[[TARGET, "label_time_ms"]]
    return _labelled(rows, labels, cutoff_ms)


@dataclass(frozen=True)
class LogRead:
    """A training set read from the log, with what was read to build it."""

    frame: pd.DataFrame
    features: log.Slice
    labels: log.Slice
    feature_records: int  # distinct transactions in the features read (after `since`)
    duplicates: int  # feature records of a transaction seen before (an at-least-once replay)
    unreadable: int  # records that are not Avro of the topic's schema, skipped
    labels_after_cutoff: int  # labels in the topic that arrived after the cutoff


def training_set_from_log(
    settings: Settings,
    since_ms: int | None = None,
    cutoff_ms: int | None = None,
    timeout: float = 300.0,
) -> pd.DataFrame:
    """The training set from the `features` and `labels` topics (see `read_log`)."""
    return read_log(settings, since_ms, cutoff_ms, timeout).frame


def read_log(
    settings: Settings,
    since_ms: int | None = None,
    cutoff_ms: int | None = None,
    timeout: float = 300.0,
) -> LogRead:
    """Read `features` (records stamped at or after `since_ms`, or all) and `labels` (those
    with label_time <= `cutoff_ms`, or all), each to its end offsets at call time, and join.

    A features record's timestamp is its transaction's (event time in a replay); a label's
    `label_time` is when the chargeback arrived.
    """
    span, records = log.read(settings, "features", since_ms, timeout)
    decode = WireDeserializer.for_topic(settings, "features")
    rows, unreadable = [], 0
    for record in records:
        if since_ms is not None and record.timestamp < since_ms:
            continue
        try:
            value = decode(record.value)
        except SchemaError:
            unreadable += 1
            continue
        rows.append(value)
    features = _feature_frame(rows)
    duplicated = features.index.duplicated(keep="first")
    features = features[~duplicated]

    label_span, label_records = log.read(settings, "labels", None, timeout)
    decode = WireDeserializer.for_topic(settings, "labels")
    ids, frauds, times = [], [], []
    for record in label_records:
        try:
            value = decode(record.value)
        except SchemaError:
            unreadable += 1
            continue
        ids.append(value["transaction_id"])
        frauds.append(int(value["tx_fraud"]))
        times.append(to_millis(value["label_time"]))
    labels = pd.DataFrame(
        {TARGET: np.asarray(frauds, np.int64), "label_time_ms": np.asarray(times, np.int64)},
        index=pd.Index(np.asarray(ids, np.int64), name="transaction_id"),
    )
    labels = labels[~labels.index.duplicated(keep="first")]
    late = 0 if cutoff_ms is None else int((labels["label_time_ms"] > cutoff_ms).sum())
    return LogRead(
        frame=_labelled(features, labels, cutoff_ms),
        features=span,
        labels=label_span,
        feature_records=len(features),
        duplicates=int(duplicated.sum()),
        unreadable=unreadable,
        labels_after_cutoff=late,
    )


def _feature_frame(rows: list[dict]) -> pd.DataFrame:
    """Decoded features records as a frame indexed by transaction_id, times in ms."""
    names = ["transaction_id", "tx_datetime", "customer_id", "terminal_id", *INPUTS]
    columns = {name: [r[name] for r in rows] for name in names}
    columns["tx_datetime"] = [to_millis(t) for t in columns["tx_datetime"]]
    frame = pd.DataFrame(
        {
            # None (an unknown profile) becomes NaN, which the model's imputer fills.
            name: np.asarray(values, dtype=float if COLUMNS.get(name) == "float64" else None)
            for name, values in columns.items()
        }
    )
    frame = frame.rename(columns={"tx_datetime": "event_time_ms"})
    return frame.set_index(pd.Index(frame.pop("transaction_id").astype(np.int64)))


def _labelled(rows: pd.DataFrame, labels: pd.DataFrame, cutoff_ms: int | None) -> pd.DataFrame:
    """`rows` joined with the labels known at `cutoff_ms`, as COLUMNS in transaction order."""
    # The cutoff rule is a week 3 exercise: RTML_IMPL=labs trains on the learner's rule.
    known = exercise("labels_known_at")(labels["label_time_ms"].to_numpy(), cutoff_ms)
    frame = rows.join(labels[known], how="inner")
    frame.index.name = "transaction_id"
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ModelError(f"The training rows lack the column(s) {', '.join(missing)}.")
    return frame[list(COLUMNS)].astype(COLUMNS).sort_index()
