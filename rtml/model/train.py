"""Train fraud models on a time split: learn from the past, test on a later window.

Random splits leak the future into training (a compromised terminal's later frauds teach
the model about its earlier ones), so the split is by time, as in the Fraud Detection
Handbook: train on `train_days`, skip a gap of the label delay, test on the `test_days`
after it. The gap is there because a model put into service at the start of the test
window can only have learnt from transactions whose labels had arrived by then.

Two candidates, both scikit-learn pipelines that start with a median imputer (the stream
sends NaN when a profile is unknown, and the exported graph must handle it):

- logistic regression on standardised inputs, classes weighted by their frequency;
- a random forest with `balanced_subsample` weights, depth 10, one thread (the machine is
  shared with the cluster).

The better one by average precision is kept; `rtml.model.export` turns it into ONNX.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from rtml.features.definitions import LABEL_DELAY_DAYS, MS_PER_DAY
from rtml.model.dataset import INPUTS, TARGET
from rtml.model.evaluate import evaluate
from rtml.model.update import ModelError

LOGREG = "logistic_regression"
FOREST = "random_forest"
KINDS = (LOGREG, FOREST)
# The handbook's windows: a week to learn from, the label delay, a week to test on.
TRAIN_DAYS = 7
TEST_DAYS = 7
FOREST_TREES = 100
FOREST_DEPTH = 10


@dataclass(frozen=True)
class Split:
    """Train on event times in [train_start, train_end), test on [test_start, test_end)."""

    train_start_ms: int
    train_end_ms: int
    test_start_ms: int
    test_end_ms: int

    def train_mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Training rows: in the train window, with a label known when testing starts."""
        t = frame["event_time_ms"].to_numpy()
        known = frame["label_time_ms"].to_numpy() <= self.test_start_ms
        return (t >= self.train_start_ms) & (t < self.train_end_ms) & known

    def test_mask(self, frame: pd.DataFrame) -> np.ndarray:
        """The rows of `frame` whose event time falls in the test window."""
        t = frame["event_time_ms"].to_numpy()
        return (t >= self.test_start_ms) & (t < self.test_end_ms)

    def describe(self) -> dict[str, str]:
        """The windows as ISO dates (end exclusive), for the model card."""
        return {
            "train": f"{_date(self.train_start_ms)} to {_date(self.train_end_ms)}",
            "gap": f"{_date(self.train_end_ms)} to {_date(self.test_start_ms)}",
            "test": f"{_date(self.test_start_ms)} to {_date(self.test_end_ms)}",
        }


def time_split(
    frame: pd.DataFrame,
    train_days: int = TRAIN_DAYS,
    test_days: int = TEST_DAYS,
    delay_days: int = LABEL_DELAY_DAYS,
) -> Split:
    """Windows that end with the last day of `frame`: test, the gap before it, train before.

    Raises ModelError when the history is shorter than the three windows together.
    """
    if min(train_days, test_days) < 1 or delay_days < 0:
        raise ModelError("Train and test windows need at least a day; the gap cannot be negative.")
    if frame.empty:
        raise ModelError("The training set is empty: no transaction has a known label.")
    times = frame["event_time_ms"]
    first, last = int(times.min()) // MS_PER_DAY, int(times.max()) // MS_PER_DAY
    test_end = last + 1
    test_start = test_end - test_days
    train_end = test_start - delay_days
    train_start = train_end - train_days
    if train_start < first:
        raise ModelError(
            f"The labelled history covers {test_end - first} day(s), but training on "
            f"{train_days}, a gap of {delay_days} and testing on {test_days} needs "
            f"{train_days + delay_days + test_days}: use a longer history or shorter windows."
        )
    return Split(
        train_start * MS_PER_DAY,
        train_end * MS_PER_DAY,
        test_start * MS_PER_DAY,
        test_end * MS_PER_DAY,
    )


def make_model(kind: str, seed: int = 0) -> Pipeline:
    """An untrained candidate: imputer (+ scaler) + classifier, class imbalance weighted."""
    # keep_empty_features: a column that is all NaN in training still takes its place, so
    # the graph's input keeps one column per feature.
    impute = ("impute", SimpleImputer(strategy="median", keep_empty_features=True))
    if kind == LOGREG:
        return Pipeline(
            [
                impute,
                ("scale", StandardScaler()),
                ("model", LogisticRegression(class_weight="balanced", max_iter=2000)),
            ]
        )
    if kind == FOREST:
        forest = RandomForestClassifier(
            n_estimators=FOREST_TREES,
            max_depth=FOREST_DEPTH,
            class_weight="balanced_subsample",
            n_jobs=1,
            random_state=seed,
        )
        return Pipeline([impute, ("model", forest)])
    raise ModelError(f"There is no model kind {kind!r}: use one of {', '.join(KINDS)}.")


def matrix(frame: pd.DataFrame) -> np.ndarray:
    """The [n, len(INPUTS)] float32 inputs of `frame`: what the service sends the graph, so
    scikit-learn trains and is checked on exactly the numbers ONNX will see."""
    return frame[list(INPUTS)].to_numpy(dtype=np.float32)


def fraud_probability(model: Pipeline, x: np.ndarray) -> np.ndarray:
    """The model's probability of the fraud class for each row."""
    return model.predict_proba(x)[:, 1]


@dataclass
class Candidate:
    """One trained model and how it did on the test window."""

    kind: str
    model: Pipeline
    fit_seconds: float
    metrics: dict[str, float]
    scores: np.ndarray = field(repr=False)


def train_candidates(
    frame: pd.DataFrame, split: Split, kinds: Sequence[str] = KINDS, seed: int = 0
) -> tuple[list[Candidate], pd.DataFrame, pd.DataFrame]:
    """Fit each kind on the train window and evaluate it on the test window.

    Returns the candidates, the train rows and the test rows.
    """
    train = frame[split.train_mask(frame)]
    test = frame[split.test_mask(frame)]
    for what, rows in (("training", train), ("test", test)):
        if rows[TARGET].nunique() < 2:
            raise ModelError(
                f"The {what} window holds {len(rows)} transaction(s) and not both classes "
                "(fraud and genuine): use a longer history or wider windows."
            )
    x, y, x_test = matrix(train), train[TARGET].to_numpy(), matrix(test)
    out = []
    for kind in kinds:
        model = make_model(kind, seed)
        started = time.perf_counter()
        model.fit(x, y)
        fit_seconds = time.perf_counter() - started
        scores = fraud_probability(model, x_test)
        out.append(Candidate(kind, model, fit_seconds, evaluate(test, scores), scores))
    return out, train, test


def best(candidates: Sequence[Candidate]) -> Candidate:
    """The candidate with the highest average precision (the imbalance-aware metric)."""
    if not candidates:
        raise ModelError("No model was trained.")
    return max(candidates, key=lambda c: c.metrics["average_precision"])


def _date(ms: int) -> str:
    return str(pd.Timestamp(ms, unit="ms").date())
