"""Inputs for the prediction service without the feature app: features records and models.

A small simulated history gives features records (the pandas batch reference computes
what the feature app would write) and a tiny fraud model trained on them, exported to
ONNX. The service's tests, its benchmark and the `serve-kill` chaos scenario write both
straight to their topics (by default the lab's; a scenario passes its own).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier

from rtml.clients import durable_producer
from rtml.config import Settings
from rtml.features.batch import batch_features
from rtml.model.update import MODEL_NAME, TOPIC, ModelUpdate
from rtml.schemas.wire import PreparedSerializer
from rtml.simulate import SimulationParams, simulate
from rtml.topics import MODEL_MAX_BYTES

FIRST_COLUMNS = ("tx_amount", "customer_avg_amount_1d", "terminal_risk_7d", "customer_nb_tx_1d")
SECOND_COLUMNS = ("tx_amount", "customer_avg_amount_7d", "terminal_risk_1d", "terminal_risk_30d")


def history(
    n_customers: int = 200, n_terminals: int = 400, n_days: int = 30, seed: int = 3
) -> pd.DataFrame:
    """Every simulated transaction with its features and fraud label, by transaction id."""
    sim = simulate(SimulationParams(n_customers, n_terminals, n_days, seed=seed))
    features = batch_features(sim.transactions, sim.labels, sim.customers, sim.terminals)
    txs = sim.transactions.set_index("transaction_id")
    columns = ["event_time_ms", "customer_id", "terminal_id", "tx_amount", "tx_fraud"]
    return features.join(txs[columns]).sort_values("event_time_ms")


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Features records as the feature app writes them (feature_time is set when sent)."""
    out = []
    for tx_id, row in zip(frame.index, frame.to_dict("records"), strict=True):
        distance = row["terminal_distance"]
        record = {k: v for k, v in row.items() if k not in ("event_time_ms", "tx_fraud")}
        record.update(
            transaction_id=int(tx_id),
            tx_datetime=int(row["event_time_ms"]),
            customer_id=int(row["customer_id"]),
            terminal_id=int(row["terminal_id"]),
            terminal_distance=None if np.isnan(distance) else float(distance),
            feature_time=0,
        )
        out.append(record)
    return out


def tiny_model(
    frame: pd.DataFrame,
    version: str,
    columns: Sequence[str] = FIRST_COLUMNS,
    review: float = 0.3,
    decline: float = 0.7,
) -> ModelUpdate:
    """A 10-tree random forest on `columns` of `frame`, as a publishable version."""
    x = frame[list(columns)].to_numpy(np.float32)
    y = frame["tx_fraud"].to_numpy()
    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(x, y)
    onnx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}).SerializeToString()
    return ModelUpdate(MODEL_NAME, version, tuple(columns), review, decline, onnx)


def publish_model(settings: Settings, update: ModelUpdate, topic: str = TOPIC) -> None:
    """Write `update` to `topic` (model-updates unless told; key: the model name) and wait
    for the ack. The value is framed with model-updates' schema whatever the topic."""
    producer = durable_producer(settings, message_max_bytes=MODEL_MAX_BYTES)
    errors: list[str] = []
    producer.produce(
        topic,
        key=update.name.encode(),
        value=PreparedSerializer.for_topic(settings, TOPIC)(update.to_record()),
        on_delivery=lambda err, _: errors.append(str(err)) if err else None,
    )
    left = producer.flush(30)
    if left or errors:
        raise RuntimeError(f"Model version {update.version} was not written: {errors or left}.")


def send_features(
    settings: Settings,
    batch: Iterable[dict[str, Any]],
    rate: float | None = None,
    extra: Iterable[tuple[bytes, bytes | None]] = (),
    topic: str = "features",
) -> int:
    """Write features records (keyed by customer, feature_time now) to `topic`, at `rate`
    per second if given, then the raw (key, value) pairs of `extra`; return how many were
    written. Values are framed with the features schema whatever the topic."""
    encode = PreparedSerializer.for_topic(settings, "features")
    producer = durable_producer(settings, linger_ms=1, compression_type="lz4")
    errors: list[str] = []

    def delivered(err: object, _: object) -> None:
        if err is not None:
            errors.append(str(err))

    sent, started = 0, time.monotonic()
    for record in batch:
        record = {**record, "feature_time": int(time.time() * 1000)}
        key = str(record["customer_id"]).encode()
        producer.produce(topic, key=key, value=encode(record), on_delivery=delivered)
        sent += 1
        if sent % 20 == 0:
            producer.poll(0)
            # Pacing, not synchronisation: hold the rate by the clock.
            ahead = started + sent / rate - time.monotonic() if rate else 0.0
            if ahead > 0:
                time.sleep(ahead)
    for key, value in extra:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
        sent += 1
    left = producer.flush(60)
    if left or errors:
        raise RuntimeError(f"{left} features records unsent, errors: {errors[:3]}.")
    return sent
