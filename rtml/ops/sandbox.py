"""Replay history through a chosen model into a sandbox topic, and compare two such runs.

A new model is best judged on the traffic the old one saw. `run` reads `features` from
offset 0 to where it ends when the run begins (`rtml.model.log.read`: no consumer group, no
commits, so the lab's services are not touched), scores every record with one saved model
version through the service's own scoring code (`rtml.serve.service.score_records`), and
writes one prediction per record to `predictions.sandbox-<name>`, never to `predictions`.
`compare` then reads two prediction topics (two sandboxes, or a sandbox and the live
`predictions`) with the delayed labels and puts them side by side: what each decided, how
often they agree, and how well each caught the frauds that are labelled so far.

A replay of the same history through the same version gives the same predictions (score,
decision, version) for every transaction: `identical` checks it. Only `predicted_time`
differs between two runs: it is when the sandbox scored the record.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from confluent_kafka import KafkaError, Producer

from rtml import topics
from rtml.clients import admin, durable_producer
from rtml.config import Settings
from rtml.errors import RtmlError
from rtml.impl import exercise
from rtml.model import log, registry
from rtml.model.evaluate import average_precision
from rtml.model.update import ModelError, Scorer
from rtml.poll import until
from rtml.schemas import SchemaError
from rtml.schemas.wire import PreparedSerializer, WireDeserializer
from rtml.serve.service import FEATURES, PREDICTIONS, prediction, score_records

PREFIX = "predictions.sandbox-"
BATCH = 500
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# What two runs of one model on one history must agree on (predicted_time is wall time).
SAME = ["score", "decision", "model_version"]

Progress = Callable[[int, int], None]  # (records scored so far, records in the slice)


class SandboxError(RtmlError):
    """A sandbox name, model version or topic is unusable."""


def topic_of(name: str) -> str:
    """The topic of sandbox `name` (`predictions` itself is accepted, for comparisons)."""
    if name in (PREDICTIONS, "live"):
        return PREDICTIONS
    if name.startswith(PREFIX):
        name = name[len(PREFIX) :]
    if not _NAME.match(name):
        raise SandboxError(
            f"{name!r} is not a sandbox name: use 1 to 40 lower-case letters, digits, '-' or '_'."
        )
    return PREFIX + name


@dataclass(frozen=True)
class SandboxRun:
    """What one replay did: records read, predictions written, and how long it took."""

    topic: str
    version: str
    records: int
    predictions: int
    reviewed: int
    undecodable: int
    seconds: float

    def sentence(self) -> str:
        """What the run did, as one sentence."""
        rate = self.records / self.seconds if self.seconds else 0.0
        return (
            f"Model {self.version} scored {self.predictions:,} of {self.records:,} features "
            f"records into {self.topic} in {self.seconds:.1f} s ({rate:,.0f} records/s); "
            f"{self.reviewed:,} got REVIEW for invalid values, {self.undecodable:,} did not "
            "decode (the live service sent those to serve.dlq)."
        )


def run(
    settings: Settings,
    version: str,
    name: str,
    replace_existing: bool = False,
    progress: Progress | None = None,
) -> SandboxRun:
    """Score all of `features` so far with saved model `version` into sandbox `name`."""
    topic = topic_of(name)
    if topic == PREDICTIONS:
        raise SandboxError("A sandbox never writes to predictions: give it a name of its own.")
    try:
        scorer = Scorer.load(registry.load(settings, version))
    except ModelError as exc:
        raise SandboxError(f"Model version {version} cannot score: {exc}") from exc
    _prepare(settings, topic, replace_existing)
    started = time.monotonic()
    _, records = log.read(settings, FEATURES)
    decode = WireDeserializer.for_topic(settings, FEATURES)
    encode = PreparedSerializer.for_topic(settings, PREDICTIONS)
    score_batch = exercise("score_batch", settings.impl)
    producer = durable_producer(settings, linger_ms=20, compression_type="lz4")
    failed: list[str] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failed.append(err.str())

    predictions = reviewed = undecodable = 0
    for first in range(0, len(records), BATCH):
        chunk = records[first : first + BATCH]
        decoded, appended = [], []
        for record in chunk:
            try:
                decoded.append(decode(record.value))
                appended.append(record.timestamp)
            except SchemaError:
                undecodable += 1
        if decoded:
            scores, decisions, reasons, _ = score_records(scorer, decoded, score_batch)
            now = int(time.time() * 1000)
            for rec, score, decision, at in zip(decoded, scores, decisions, appended, strict=True):
                value = encode(prediction(rec, score, decision, scorer.version, at, now))
                _produce(producer, topic, str(rec["transaction_id"]).encode(), value, delivered)
            predictions += len(decoded)
            reviewed += sum(r is not None for r in reasons)
        if progress is not None:
            progress(min(first + BATCH, len(records)), len(records))
    left = producer.flush(60)
    if left or failed:
        raise SandboxError(
            f"{left or len(failed)} sandbox predictions were not written to {topic} "
            f"({failed[0] if failed else 'not acknowledged in 60 s'})."
        )
    return SandboxRun(
        topic,
        scorer.version,
        len(records),
        predictions,
        reviewed,
        undecodable,
        time.monotonic() - started,
    )


def _produce(
    producer: Producer, topic: str, key: bytes, value: bytes, delivered: Callable[..., None]
) -> None:
    """Produce one record; a full queue is waited out by serving delivery reports."""
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=delivered)
            return
        except BufferError:
            producer.poll(0.05)


def _prepare(settings: Settings, topic: str, replace_existing: bool) -> None:
    """Create the sandbox topic with the spec of `predictions`; an old one is refused or,
    when asked, deleted first."""
    client = admin(settings, timeout=10)

    def exists() -> bool:
        return topic in client.list_topics(timeout=10).topics

    if exists():
        if not replace_existing:
            raise SandboxError(
                f"Sandbox topic {topic} exists already: pick another name, or pass --replace "
                "to delete it and replay again."
            )
        client.delete_topics([topic], operation_timeout=30)[topic].result(timeout=60)
        until(lambda: not exists(), 60, f"topic {topic} to be deleted", interval=0.2)
    topics.apply(settings, (replace(topics.spec(PREDICTIONS), name=topic, schema=None),))


def read(settings: Settings, name: str) -> pd.DataFrame:
    """Every prediction in sandbox `name` (or `predictions`), one row per record."""
    topic = topic_of(name)
    if topic not in admin(settings, timeout=10).list_topics(timeout=10).topics:
        raise SandboxError(f"There is no topic {topic}: run `rtml replay sandbox` first.")
    _, records = log.read(settings, topic)
    decode = WireDeserializer.for_topic(settings, PREDICTIONS)
    rows = [decode(r.value) for r in records]
    columns = ["transaction_id", *SAME, "predicted_time"]
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)


def labels(settings: Settings) -> pd.Series:
    """Fraud labels published so far, by transaction id (the newest label of each wins)."""
    _, records = log.read(settings, "labels")
    decode = WireDeserializer.for_topic(settings, "labels")
    found = {}
    for r in records:
        label = decode(r.value)
        found[label["transaction_id"]] = bool(label["tx_fraud"])
    return pd.Series(found, dtype=bool, name="fraud")


def identical(one: pd.DataFrame, other: pd.DataFrame) -> bool:
    """Whether two runs made the same predictions: per transaction, same score, decision
    and version, and each transaction exactly once in both."""
    if one["transaction_id"].duplicated().any() or other["transaction_id"].duplicated().any():
        return False
    a = one.set_index("transaction_id")[SAME].sort_index()
    b = other.set_index("transaction_id")[SAME].sort_index()
    return a.index.equals(b.index) and a.equals(b)


@dataclass(frozen=True)
class Comparison:
    """Two prediction runs side by side (`table`), and how their decisions moved."""

    names: tuple[str, str]
    table: pd.DataFrame
    moves: pd.DataFrame  # decision in the first run (rows) against the second (columns)
    identical: bool


def compare(settings: Settings, first: str, second: str) -> Comparison:
    """Read two prediction topics and the labels, and compare them transaction by transaction."""
    one, two = read(settings, first), read(settings, second)
    truth = labels(settings)
    table = pd.DataFrame(
        {name: _summary(frame, truth) for name, frame in ((first, one), (second, two))}
    )
    both = one.drop_duplicates("transaction_id").merge(
        two.drop_duplicates("transaction_id"), on="transaction_id", suffixes=("_a", "_b")
    )
    moves = pd.crosstab(both["decision_a"], both["decision_b"]).rename_axis(
        index=first, columns=second
    )
    agree = float((both["decision_a"] == both["decision_b"]).mean()) if len(both) else np.nan
    delta = (both["score_a"] - both["score_b"]).abs()
    table.loc["transactions in both"] = [len(both)] * 2
    table.loc["same decision (share)"] = [round(agree, 4)] * 2
    table.loc["largest score difference"] = [round(float(delta.max()), 6) if len(both) else 0] * 2
    return Comparison((first, second), table, moves, identical(one, two))


def _summary(frame: pd.DataFrame, truth: pd.Series) -> dict[str, object]:
    """One run's counts, and its precision, recall and average precision on what is labelled."""
    versions = sorted(frame["model_version"].unique())
    decisions = frame["decision"].value_counts()
    labelled = frame.drop_duplicates("transaction_id").join(truth, on="transaction_id")
    labelled = labelled.dropna(subset=["fraud", "score"])
    fraud = labelled["fraud"].astype(bool)
    flagged = labelled["decision"] != "APPROVE"
    caught = int((flagged & fraud).sum())
    return {
        "predictions": len(frame),
        "model versions": ", ".join(versions) or "-",
        "APPROVE": int(decisions.get("APPROVE", 0)),
        "REVIEW": int(decisions.get("REVIEW", 0)),
        "DECLINE": int(decisions.get("DECLINE", 0)),
        "labelled": len(labelled),
        "frauds labelled": int(fraud.sum()),
        "precision (REVIEW or DECLINE)": round(caught / flagged.sum(), 4) if flagged.any() else "-",
        "recall (REVIEW or DECLINE)": round(caught / fraud.sum(), 4) if fraud.any() else "-",
        "average precision": _average_precision(fraud, labelled["score"]),
    }


def _average_precision(fraud: pd.Series, scores: pd.Series) -> object:
    if fraud.nunique() < 2:
        return "-"
    return round(average_precision(fraud.to_numpy(), scores.to_numpy()), 4)
