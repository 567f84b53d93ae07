"""A model version as it travels on `model-updates`, and the scorer a service builds from it.

A published version is self-contained: the ONNX graph itself (data that onnxruntime runs,
never pickled code a consumer would execute), its input columns, its decision thresholds,
a SHA-256 of the graph and its evaluation metrics. The topic is compacted and keyed by the
model name, so a service that starts reads the latest version of each model, and one that
runs sees every new version as it is published (see `rtml.serve`).

`Scorer.load` is the gate a version passes before it may score: the digest matches, the
inputs are fields of the features topic with numeric types, onnxruntime accepts the graph,
and a probe batch gives one finite probability in [0, 1] per row. A version that fails is
refused with a `ModelError` that says why; the caller keeps its previous scorer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from rtml.errors import RtmlError
from rtml.schemas import SCHEMAS, load_schema

TOPIC = "model-updates"
MODEL_NAME = "fraud"
DECISIONS = ("APPROVE", "REVIEW", "DECLINE")
_NUMERIC = {"long", "int", "double", "float", "boolean"}
# Identifiers are numbers but not measurements: a model keyed on them would not generalise.
_IDS = {"transaction_id", "customer_id", "terminal_id"}


class ModelError(RtmlError):
    """A model version is malformed, corrupt, or does not fit the features it would score."""


def feature_fields() -> dict[str, str]:
    """Numeric fields of the features topic's schema and their Avro type (nullable unwrapped).

    These are the columns a model may take as input (identifiers excepted).
    """
    fields = json.loads(load_schema(SCHEMAS["features"]))["fields"]
    out = {}
    for f in fields:
        kind = f["type"]
        if isinstance(kind, list):  # ["null", "double"]: nullable, missing becomes NaN
            kind = next((k for k in kind if k != "null"), "null")
        if isinstance(kind, str) and kind in _NUMERIC and f["name"] not in _IDS:
            out[f["name"]] = kind
    return out


@dataclass(frozen=True)
class ModelUpdate:
    """One version of a model, as one record of `model-updates` (see model_update.avsc)."""

    name: str
    version: str
    features: tuple[str, ...]
    review_threshold: float
    decline_threshold: float
    onnx: bytes
    metrics: Mapping[str, float] = field(default_factory=dict)
    created: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    sha256: str = ""

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", digest(self.onnx))

    def to_record(self) -> dict[str, Any]:
        """The Avro record (serialize it with the registry's `model-updates` schema)."""
        return {
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "features": list(self.features),
            "review_threshold": float(self.review_threshold),
            "decline_threshold": float(self.decline_threshold),
            "onnx": self.onnx,
            "sha256": self.sha256,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ModelUpdate:
        """A version from a decoded Avro record; the digest is checked later, by `Scorer.load`."""
        created = record["created"]
        if isinstance(created, int):
            created = dt.datetime.fromtimestamp(created / 1000, dt.UTC)
        return cls(
            name=record["name"],
            version=record["version"],
            features=tuple(record["features"]),
            review_threshold=record["review_threshold"],
            decline_threshold=record["decline_threshold"],
            onnx=record["onnx"],
            metrics=dict(record["metrics"]),
            created=created,
            sha256=record["sha256"],
        )

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """APPROVE, REVIEW or DECLINE for each score, by the version's thresholds."""
        index = (scores >= self.review_threshold).astype(np.int8) + (
            scores >= self.decline_threshold
        ).astype(np.int8)
        return np.asarray(DECISIONS, dtype=object)[index]


def digest(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


class Scorer:
    """A version that passed every check, ready to score: an onnxruntime session."""

    def __init__(self, update: ModelUpdate, session: Any, input_name: str) -> None:
        self.update = update
        self.session = session
        self.input_name = input_name

    @property
    def version(self) -> str:
        """The version id of the loaded model."""
        return self.update.version

    @property
    def features(self) -> tuple[str, ...]:
        """The features the model takes, in order."""
        return self.update.features

    @classmethod
    def load(cls, update: ModelUpdate, available: Mapping[str, str] | None = None) -> Scorer:
        """Check `update` and build its session; raise ModelError saying what is wrong.

        `available` is the input columns it may use (default: `feature_fields()`).
        """
        import onnxruntime as ort

        where = f"Model {update.name} version {update.version!r}"
        if digest(update.onnx) != update.sha256:
            raise ModelError(f"{where} is corrupt: its ONNX bytes do not match their SHA-256.")
        fields = feature_fields() if available is None else available
        unknown = [f for f in update.features if f not in fields]
        if not update.features or unknown:
            raise ModelError(
                f"{where} does not fit the features topic: "
                + (
                    f"it expects {', '.join(unknown)}, which the features do not have."
                    if unknown
                    else "it names no input columns."
                )
            )
        if not 0 <= update.review_threshold <= update.decline_threshold <= 1:
            raise ModelError(
                f"{where} has thresholds review={update.review_threshold:g}, "
                f"decline={update.decline_threshold:g}: they must satisfy "
                "0 <= review <= decline <= 1."
            )
        options = ort.SessionOptions()
        # One scoring thread: the service's process shares 2 cores with the cluster, and its
        # micro-batches are small enough that threads cost more than they give.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                update.onnx, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad graph
            raise ModelError(f"{where} is not a valid ONNX model: {exc}") from exc
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] not in (len(update.features), None, "None"):
            raise ModelError(
                f"{where} takes inputs {[(i.name, i.shape) for i in inputs]}, not one "
                f"[n, {len(update.features)}] array of its {len(update.features)} features."
            )
        scorer = cls(update, session, inputs[0].name)
        probe = scorer.score(np.zeros((2, len(update.features)), dtype=np.float32))
        if probe.shape != (2,) or not np.all((probe >= 0) & (probe <= 1)):  # NaN fails too
            raise ModelError(
                f"{where} does not give one probability per row (probe gave {probe!r})."
            )
        return scorer

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Fraud probability of each row of `rows` ([n, len(features)], float32)."""
        outputs = self.session.run(None, {self.input_name: rows})
        # skl2onnx classifiers give (labels, probabilities[n, 2]) with zipmap off.
        probabilities = np.asarray(outputs[-1])
        if probabilities.ndim == 2:
            probabilities = probabilities[:, -1]
        return probabilities.astype(np.float64, copy=False)


def decode_features(records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> np.ndarray:
    """The [n, k] float32 input of `records` for `columns`; None or a missing field is NaN.

    One tuple per record and one conversion for the batch: numpy turns None into NaN
    itself. Only a batch with a record that lacks a field takes the slower path.
    """
    if not columns:
        return np.empty((len(records), 0), dtype=np.float32)
    pick = itemgetter(*columns)
    try:
        rows = [pick(r) for r in records]
    except KeyError:
        rows = [tuple(r.get(c) for c in columns) for r in records]
    if len(columns) == 1:
        rows = [(v,) for v in rows]
    return np.array(rows, dtype=np.float32).reshape(len(records), len(columns))
