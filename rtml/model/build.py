"""One training run, from a training set to a version ready to save: split, fit both
candidates, keep the better, export it to ONNX, check the export, choose thresholds."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rtml.model.dataset import INPUTS, TARGET
from rtml.model.export import check_equal, choose_thresholds, rates_at, to_onnx
from rtml.model.train import (
    KINDS,
    TEST_DAYS,
    TRAIN_DAYS,
    Candidate,
    Split,
    best,
    matrix,
    time_split,
    train_candidates,
)
from rtml.model.update import MODEL_NAME, ModelUpdate

Progress = Callable[[str], None]


def _now_ms() -> dt.datetime:
    """Now, to the millisecond: what `model-updates` keeps (timestamp-millis), so a version
    read back from the topic equals the one saved on disk."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class Trained:
    """Everything a version is made of, except its id (the registry assigns that)."""

    source: dict[str, Any]
    split: Split
    train_rows: int
    train_fraud_rate: float
    test_rows: int
    candidates: list[Candidate]
    chosen: Candidate
    onnx: bytes
    onnx_max_diff: float
    review_threshold: float
    decline_threshold: float
    at_thresholds: dict[str, dict[str, float]]
    test_labels: np.ndarray = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)
    created: dt.datetime = field(default_factory=_now_ms)

    @property
    def metrics(self) -> dict[str, float]:
        """The chosen model's test metrics, as published with the version."""
        return dict(self.chosen.metrics)

    def update(self, version: str) -> ModelUpdate:
        """The version as a `model-updates` record."""
        return ModelUpdate(
            name=MODEL_NAME,
            version=version,
            features=INPUTS,
            review_threshold=self.review_threshold,
            decline_threshold=self.decline_threshold,
            onnx=self.onnx,
            metrics=self.metrics,
            created=self.created,
        )


def build(
    frame: pd.DataFrame,
    source: dict[str, Any],
    *,
    train_days: int = TRAIN_DAYS,
    test_days: int = TEST_DAYS,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    progress: Progress = lambda _: None,
) -> Trained:
    """Train, evaluate, export and check; `source` says where `frame` came from (for the
    card). `progress` gets one line per step."""
    split = time_split(frame, train_days, test_days)
    windows = split.describe()
    progress(f"Training on {windows['train']}, testing on {windows['test']} ...")
    started = time.perf_counter()
    candidates, train, test = train_candidates(frame, split, kinds, seed)
    fit_s = time.perf_counter() - started
    for c in candidates:
        progress(f"  {c.kind}: fitted in {c.fit_seconds:.1f} s on {len(train):,} rows")
    chosen = best(candidates)
    progress(f"Exporting {chosen.kind} to ONNX and checking it against scikit-learn ...")
    started = time.perf_counter()
    onnx = to_onnx(chosen.model, len(INPUTS))
    gap = check_equal(onnx, chosen.scores, matrix(test))
    export_s = time.perf_counter() - started
    y = test[TARGET].to_numpy()
    review, decline = choose_thresholds(y, chosen.scores)
    return Trained(
        source=source,
        split=split,
        train_rows=len(train),
        train_fraud_rate=float(train[TARGET].mean()),
        test_rows=len(test),
        candidates=candidates,
        chosen=chosen,
        onnx=onnx,
        onnx_max_diff=gap,
        review_threshold=review,
        decline_threshold=decline,
        at_thresholds={
            "review": rates_at(y, chosen.scores, review),
            "decline": rates_at(y, chosen.scores, decline),
        },
        test_labels=y,
        seconds={"fit": fit_s, "export": export_s},
    )
